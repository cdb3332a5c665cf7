"""Batches and the CLI writing straight into object storage (moto's S3 on loopback)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("obstore")

import freepik_bg
from freepik_bg import output_name
from freepik_bg.testing import Emulator

from .conftest import CLI, KEY, cli_env, run_cli
from .storage_fixtures import (
    S3,
    boto_fixture,  # noqa: F401 - fixtures
    moto_endpoint_fixture,  # noqa: F401
    s3_fixture,  # noqa: F401
)


def urls_for(emu: Emulator, n: int) -> list[str]:
    return [f"{emu.image_url('ball-small.png')}?s3={i}" for i in range(n)]


def test_cli_stores_cutouts_in_a_bucket_and_resumes_without_paying(
    emu: Emulator, s3: S3, tmp_path: Path
) -> None:
    urls = urls_for(emu, 6)
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls) + "\n")
    args = ["remove", str(listing), "-o", s3.url("cutouts/"), "--base-url", emu.base_url]
    args += ["--report", str(tmp_path / "report.json")]
    first = run_cli(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert sorted(s3.keys()) == sorted(f"cutouts/{output_name(u)}" for u in urls)
    head = s3.client.head_object(Bucket=s3.bucket, Key=f"cutouts/{output_name(urls[0])}")
    assert head["ContentType"] == "image/png"
    items = json.loads((tmp_path / "report.json").read_text())["items"]
    assert all(i["location"].startswith(f"s3://{s3.bucket}/cutouts/") for i in items)
    # The journal stays local, one per destination; the rerun pays nothing.
    assert list(tmp_path.glob(".freepik-bg-journal.*.jsonl"))
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert emu.stats.credits_charged == len(urls)
    # A skipped item is where the first run put it, said the same way: a URL, not a key.
    skipped = json.loads((tmp_path / "report.json").read_text())["items"]
    assert [i["status"] for i in skipped] == ["skipped"] * len(urls)
    assert sorted(i["location"] for i in skipped) == sorted(i["location"] for i in items)


def test_cli_refuses_a_missing_bucket_before_any_credit(
    emu: Emulator, s3: S3, tmp_path: Path
) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls_for(emu, 3)) + "\n")
    result = run_cli(
        ["remove", str(listing), "-o", "s3://no-such-bucket-here/x/", "--base-url", emu.base_url],
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "no-such-bucket-here" in result.stderr
    assert "Traceback" not in result.stderr
    assert emu.stats.posts == 0


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_sdk_accepts_a_storage_url_as_dest(emu: Emulator) -> None:
    urls = urls_for(emu, 3)
    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        report = await client.run_batch(urls, "memory://", rate=None)
    assert len(report.stored) == 3
    assert all(
        item.location == f"memory:///{output_name(item.image_url)}" for item in report.stored
    )


def test_a_url_that_is_not_storage_is_refused() -> None:
    with pytest.raises(freepik_bg.ConfigurationError, match=r"s3://"):
        freepik_bg.remove_backgrounds([], "ftp://host/out", api_key=KEY)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_sdk_accepts_a_store_configured_in_code(
    emu: Emulator, s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    from obstore.store import S3Store

    # Credentials and endpoint in code, not from the environment.
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    store = S3Store(
        s3.bucket,
        endpoint=s3.endpoint,
        access_key_id="AKIAFREEPIKBGTEST0001",
        secret_access_key="aws-secret-7f3a9c1e-DO-NOT-LEAK",
        region="us-east-1",
        client_options={"allow_http": True},
    )
    urls = urls_for(emu, 2)
    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        report = await client.run_batch(urls, store, rate=None)
    assert len(report.stored) == 2
    assert sorted(s3.keys()) == sorted(output_name(u) for u in urls)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_transformed_outputs_get_their_content_type(emu: Emulator, s3: S3) -> None:
    (url,) = urls_for(emu, 1)
    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        report = await client.run_batch(
            [url], s3.url("t/"), output_format="webp", keep_png=True, rate=None
        )
    assert report.ok
    stem = output_name(url).removesuffix(".png")
    assert sorted(s3.keys()) == [f"t/{stem}.png", f"t/{stem}.webp"]
    for key, kind in ((f"t/{stem}.webp", "image/webp"), (f"t/{stem}.png", "image/png")):
        assert s3.client.head_object(Bucket=s3.bucket, Key=key)["ContentType"] == kind


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_store_that_goes_down_mid_run_loses_nothing_and_resume_pays_nothing_twice(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.server import ThreadedMotoServer

    from .storage_fixtures import REGION, boto3, set_aws_env

    def serve(port: int = 0) -> ThreadedMotoServer:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        return server

    server = serve()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    set_aws_env(monkeypatch, endpoint)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    s3.create_bucket(Bucket="goes-down")
    emu.configure(latency=0.2)  # several POSTs in flight when the store goes away
    urls = urls_for(emu, 12)
    journal = tmp_path / "run.jsonl"

    posted = 0

    def on_event(event: freepik_bg.ProgressEvent) -> None:
        nonlocal posted
        posted += event.kind is freepik_bg.ProgressKind.POSTED
        if posted == 3 and server is not None:
            # The endpoint goes away while this third item is paid for and not yet
            # stored (the hook runs before its download): connections are refused.
            server.stop()

    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        first = await client.run_batch(
            urls,
            "s3://goes-down/out/",
            journal=journal,
            concurrency=4,
            rate=None,
            progress=on_event,
        )
        stored = len(first.stored)
        assert stored < len(urls)
        assert any(isinstance(item.error, freepik_bg.SinkError) for item in first.failed)
        assert "cannot be stored" in (first.stop_reason or "")
        paid = emu.stats.credits_charged
        server = None
        back = serve(port)  # the same endpoint again, with the same (in-process) data
        try:
            emu.configure(latency=0.0)
            again = await client.run_batch(urls, "s3://goes-down/out/", journal=journal, rate=None)
            assert not again.failed
            listing = s3.list_objects_v2(Bucket="goes-down").get("Contents", [])
            assert sorted(o["Key"] for o in listing) == sorted(
                f"out/{output_name(u)}" for u in urls
            )  # every output once, nothing partial
            assert not s3.list_multipart_uploads(Bucket="goes-down").get("Uploads")
        finally:
            back.stop()
    # Paid-for links that could not be stored were downloaded again, not paid again.
    assert emu.stats.credits_charged == len(urls)
    assert paid > stored


def test_a_second_run_into_the_same_bucket_prefix_from_elsewhere_is_refused(
    emu: Emulator, s3: S3, tmp_path: Path
) -> None:
    """A bucket's journal stays in the working directory: two runs from two folders
    into one prefix would each pay for the same images, were the bucket not locked."""
    urls = urls_for(emu, 12)
    here, there = tmp_path / "here", tmp_path / "there"
    for folder in (here, there):
        folder.mkdir()
        (folder / "urls.txt").write_text("\n".join(urls) + "\n")
    args = ["remove", "urls.txt", "-o", s3.url("shared"), "--base-url", emu.base_url]
    args += ["--concurrency", "2", "--progress", "plain"]
    emu.configure(latency=0.25)  # the emu fixture resets it after the test
    first = subprocess.Popen(
        [*CLI, *args],
        cwd=here,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert first.stdout is not None
    line = first.stdout.readline()
    assert line.startswith("ok"), (line, first.communicate())  # under way: it holds the lock
    emu.configure(latency=5.0)  # and stays so, however slowly the second one starts
    second = run_cli([*args[:3], s3.url("shared/"), *args[4:]], cwd=there)
    emu.configure(latency=0.0)
    assert second.returncode == 2, second.stderr
    assert f"another run on this machine is writing to {s3.url('shared/')}" in second.stderr
    first.communicate(timeout=60)
    assert first.returncode == 0
    assert emu.stats.credits_charged == len(urls)
    # The lock went with the first run: a rerun from elsewhere pays nothing.
    again = run_cli(args, cwd=there)
    assert again.returncode == 0, again.stderr
    assert emu.stats.credits_charged == len(urls)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_bucket_knows_a_cutout_however_its_url_is_spelled(emu: Emulator, s3: S3) -> None:
    # No journal: the bucket is the only memory. The object's name and its recorded source
    # are of the image, so a rerun that spells the URL otherwise pays nothing.
    url = urls_for(emu, 1)[0]
    respelled = url.replace("http://", "HTTP://") + "#top"
    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        first = await client.run_batch([url], s3.url("p/"), rate=None)
        again = await client.run_batch([respelled], s3.url("p/"), rate=None)
    assert len(first.stored) == 1
    assert len(again.skipped) == 1
    assert again.skipped[0].location == first.stored[0].location
    assert emu.stats.credits_charged == 1
    assert s3.keys() == [f"p/{output_name(url)}"]
