"""ObjectStoreSink against a loopback moto S3, a local folder and memory; inspected with boto3."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from freepik_bg import ConfigurationError, OutputConflictError, SinkError, SinkItem, output_name
from freepik_bg._sinks import SOURCE_XATTR

from .conftest import PNG
from .storage_fixtures import (
    S3,
    SECRET_KEY,
    boto_fixture,  # noqa: F401 - fixtures
    moto_auth_fixture,  # noqa: F401
    moto_endpoint_fixture,  # noqa: F401
    s3_fixture,  # noqa: F401
    set_aws_env,
)

from freepik_bg._storage import (  # isort: skip - after the importorskip above
    SOURCE_ATTRIBUTE,
    encode_source,
    is_storage_url,
    sink_from_url,
)

pytestmark = pytest.mark.anyio

MB = 1024 * 1024
URL = "https://img.test/shoes/red.jpg"


def item(url: str = URL, name: str | None = None) -> SinkItem:
    name = output_name(url) if name is None else name
    return SinkItem(index=0, image_url=url, name=name, size="high_resolution")


async def chunks(data: bytes = PNG, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def megabytes(count: int, fail_after: int | None = None) -> AsyncIterator[bytes]:
    """``count`` distinct 1 MiB chunks; raise after ``fail_after`` of them."""
    for i in range(count):
        if i == fail_after:
            raise ConnectionResetError("download broke")
        yield i.to_bytes(4, "big") * (MB // 4)


async def test_store_then_exists_with_type_and_source(s3: S3) -> None:
    sink = sink_from_url(s3.url("cutouts/"), overwrite=False)
    await sink.check()
    it = item()
    assert await sink.exists(it) is None
    location = await sink.store(it, chunks())
    assert location == f"s3://{s3.bucket}/cutouts/{it.name}"
    head = s3.head(f"cutouts/{it.name}")
    assert head["ContentType"] == "image/png"
    assert head["Metadata"] == {SOURCE_ATTRIBUTE: URL}
    assert s3.read(f"cutouts/{it.name}") == PNG
    assert await sink.exists(it) == location
    with pytest.raises(OutputConflictError, match=r"holds the cutout of https://img\.test/shoes"):
        await sink.exists(item("https://img.test/other.jpg", name=it.name))


async def test_a_url_that_is_not_ascii_is_recorded_reversibly(s3: S3) -> None:
    url = "https://img.test/caf\u00e9%20cr\u00e8me.jpg?w=2"
    sink = sink_from_url(s3.url(), overwrite=False)
    it = item(url, name="cafe.png")
    await sink.store(it, chunks())
    recorded = s3.head("cafe.png")["Metadata"][SOURCE_ATTRIBUTE]
    assert recorded.isascii()
    assert recorded == encode_source(url)
    assert await sink.exists(it) == f"s3://{s3.bucket}/cafe.png"
    with pytest.raises(OutputConflictError, match="caf\u00e9%20cr\u00e8me"):
        await sink.exists(item("https://img.test/x.jpg", name="cafe.png"))


async def test_a_very_long_url_is_recorded_by_its_digest(s3: S3) -> None:
    url = "https://img.test/a.jpg?sig=" + "x" * 3000
    sink = sink_from_url(s3.url(), overwrite=False)
    await sink.store(item(url, name="long.png"), chunks())
    assert s3.head("long.png")["Metadata"][SOURCE_ATTRIBUTE].startswith("sha256:")
    assert await sink.exists(item(url, name="long.png")) is not None


async def test_create_only_never_replaces_another_urls_object(s3: S3) -> None:
    other = "https://img.test/other.jpg"
    s3.client.put_object(
        Bucket=s3.bucket, Key="shared.png", Body=b"theirs", Metadata={SOURCE_ATTRIBUTE: other}
    )
    sink = sink_from_url(s3.url(), overwrite=False)
    with pytest.raises(OutputConflictError, match=r"holds the cutout of https://img\.test/other"):
        await sink.store(item(name="shared.png"), chunks())
    assert s3.read("shared.png") == b"theirs"


async def test_create_only_accepts_a_concurrent_writer_of_the_same_url(s3: S3) -> None:
    """The object appeared between exists() and store(): it is this URL's, so it counts."""
    s3.client.put_object(
        Bucket=s3.bucket, Key="same.png", Body=b"first", Metadata={SOURCE_ATTRIBUTE: URL}
    )
    sink = sink_from_url(s3.url(), overwrite=False)
    assert await sink.store(item(name="same.png"), chunks()) == f"s3://{s3.bucket}/same.png"
    assert s3.read("same.png") == b"first"


async def test_overwrite_replaces(s3: S3) -> None:
    s3.client.put_object(Bucket=s3.bucket, Key="x.png", Body=b"old")
    sink = sink_from_url(s3.url(), overwrite=True)
    await sink.store(item(name="x.png"), chunks())
    assert s3.read("x.png") == PNG


@pytest.mark.parametrize("overwrite", [False, True], ids=["create-only", "overwrite"])
async def test_a_stream_that_breaks_leaves_no_object(s3: S3, overwrite: bool) -> None:
    sink = sink_from_url(s3.url("out/"), overwrite=overwrite)
    stream = megabytes(12, fail_after=8)  # past the first 5 MiB part
    with pytest.raises(ConnectionResetError, match="download broke") as caught:
        await sink.store(item(), stream)
    assert type(caught.value) is ConnectionResetError  # the stream's own, not wrapped
    assert s3.keys() == []
    assert s3.uploads() == []  # the multipart upload was aborted, not left to bill


async def test_racing_writers_of_two_urls_end_with_one_object_and_one_conflict(s3: S3) -> None:
    sink = sink_from_url(s3.url(), overwrite=False)
    urls = ["https://img.test/one.jpg", "https://img.test/two.jpg"]
    outcomes: dict[str, str] = {}

    async def write(url: str) -> None:
        try:
            outcomes[url] = await sink.store(item(url, name="same-name.png"), megabytes(2))
        except OutputConflictError:
            outcomes[url] = "conflict"

    async with anyio.create_task_group() as tg:
        for url in urls:
            tg.start_soon(write, url)
    assert sorted(outcomes.values()) == ["conflict", f"s3://{s3.bucket}/same-name.png"]
    winner = next(url for url, outcome in outcomes.items() if outcome != "conflict")
    assert s3.head("same-name.png")["Metadata"] == {SOURCE_ATTRIBUTE: winner}


async def test_cancelling_an_upload_leaves_nothing_behind(s3: S3) -> None:
    sink = sink_from_url(s3.url(), overwrite=True)
    sent = anyio.Event()

    async def stalls_after_a_part() -> AsyncIterator[bytes]:
        async for chunk in megabytes(7):
            yield chunk
        sent.set()
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        tg.start_soon(sink.store, item(), stalls_after_a_part())
        await sent.wait()
        tg.cancel_scope.cancel()
    assert s3.keys() == []
    assert s3.uploads() == []


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_large_cutout_streams_in_multipart_parts(s3: S3) -> None:
    sink = sink_from_url(s3.url(), overwrite=True)
    expected = hashlib.sha256()
    async for chunk in megabytes(25):
        expected.update(chunk)
    await sink.store(item(name="big.png"), megabytes(25))
    assert s3.head("big.png", PartNumber=1)["PartsCount"] == 5  # 5 MiB parts
    assert hashlib.sha256(s3.read("big.png")).hexdigest() == expected.hexdigest()
    assert s3.head("big.png")["ContentType"] == "image/png"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_create_only_holds_an_object_once_not_twice() -> None:
    """obstore keeps the chunks themselves until its single PUT: no joined copy."""
    sink = sink_from_url("memory://", overwrite=False)
    size = 24 * MB
    tracemalloc.start()
    try:
        await sink.store(item(name="big.png"), megabytes(24))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.25 * size, f"peak {peak / MB:.1f} MiB for a {size / MB:.0f} MiB object"


async def test_check_passes_for_a_bucket_that_is_there(s3: S3) -> None:
    await sink_from_url(s3.url("deep/prefix/"), overwrite=False).check()


async def test_check_names_a_missing_bucket_and_the_endpoint(s3: S3) -> None:
    sink = sink_from_url("s3://no-such-bucket/out/", overwrite=False)
    with pytest.raises(SinkError) as caught:
        await sink.check()
    assert str(caught.value) == f"bucket 'no-such-bucket' does not exist at {s3.endpoint}"


async def test_check_says_credentials_refused_without_the_secret(
    s3: S3, moto_auth: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key_id, secret = moto_auth
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    await sink_from_url(s3.url(), overwrite=False).check()  # the right pair works

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    sink = sink_from_url(s3.url(), overwrite=False)
    with pytest.raises(SinkError, match="credentials refused") as caught:
        await sink.check()
    with pytest.raises(SinkError, match="credentials refused") as stored:
        await sink.store(item(), chunks())
    for error in (caught.value, stored.value):
        assert error.__cause__ is not None
        for text in (str(error), repr(error), str(error.__cause__), repr(error.__cause__)):
            assert SECRET_KEY not in text
            assert secret not in text


async def test_check_says_an_endpoint_that_is_down_cannot_be_reached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    set_aws_env(monkeypatch, f"http://127.0.0.1:{port}")
    sink = sink_from_url("s3://bucket/out/", overwrite=False)
    with pytest.raises(
        SinkError, match=rf"cannot reach s3://bucket/out/ at http://127.0.0.1:{port}"
    ):
        await sink.check()


async def test_a_plain_http_endpoint_not_allowed_names_the_switch(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A local S3 (moto here, MinIO for users) without AWS_ALLOW_HTTP: obstore only says
    # "builder error", before any request.
    monkeypatch.delenv("AWS_ALLOW_HTTP")
    sink = sink_from_url(s3.url("out/"), overwrite=False)
    with pytest.raises(SinkError) as caught:
        await sink.check()
    message = str(caught.value)
    assert f"the endpoint {s3.endpoint} is plain http" in message
    assert "set AWS_ALLOW_HTTP=true" in message
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    await sink_from_url(s3.url("out/"), overwrite=False).check()  # and with it, it works


async def test_check_gives_up_on_an_endpoint_that_never_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections complete in the kernel; nothing ever answers
        port = silent.getsockname()[1]
        set_aws_env(monkeypatch, f"http://127.0.0.1:{port}")
        sink = sink_from_url("s3://bucket/", overwrite=False, check_timeout=0.5)
        with pytest.raises(SinkError, match=r"cannot reach s3://bucket/: no answer within 0.5 s"):
            await sink.check()


async def test_memory_store_needs_no_server() -> None:
    sink = sink_from_url("memory://", overwrite=False)
    await sink.check()
    location = await sink.store(item(name="a/b.png"), chunks())
    assert location == "memory:///a/b.png"
    assert await sink.exists(item(name="a/b.png")) == location
    with pytest.raises(OutputConflictError):
        await sink.exists(item("https://img.test/other.jpg", name="a/b.png"))
    with pytest.raises(OutputConflictError):
        await sink.store(item("https://img.test/other.jpg", name="a/b.png"), chunks())


async def test_a_local_folder_keeps_files_and_their_source(tmp_path: Path) -> None:
    target = tmp_path / "out dir"
    sink = sink_from_url(f"file://{target}/", overwrite=False)
    assert target.is_dir()
    await sink.check()
    it = item(name="shoes/red.png")
    location = await sink.store(it, chunks())
    assert location == (target / "shoes" / "red.png").as_uri()
    assert (target / "shoes" / "red.png").read_bytes() == PNG
    assert await sink.exists(it) == location

    with pytest.raises(ConnectionResetError):
        await sink.store(item(name="broken.png"), megabytes(3, fail_after=2))
    assert sorted(p.name for p in target.rglob("*")) == ["red.png", "shoes"]
    try:
        os.getxattr(target / "shoes" / "red.png", SOURCE_XATTR)
    except OSError:
        pytest.skip(f"this filesystem keeps no {SOURCE_XATTR} xattrs")
    with pytest.raises(OutputConflictError):
        await sink.exists(item("https://img.test/other.jpg", name="shoes/red.png"))


async def test_unsafe_names_are_refused() -> None:
    sink = sink_from_url("memory://", overwrite=False)
    for name in ("", "/abs.png", "../up.png", "a/../b.png", "a//b.png", "./a.png", "a\\b.png"):
        with pytest.raises(ValueError, match="unsafe output name"):
            await sink.exists(item(name=name))


def test_storage_urls_are_recognised() -> None:
    for url in ("s3://b/p/", "S3://b", "gs://b/", "az://c/p", "file:///tmp/x/", "memory://"):
        assert is_storage_url(url), url
    for text in ("https://a.test/x.jpg", "ftp://host/x", "out/", "s3:/b", "hdfs://n/p"):
        assert not is_storage_url(text), text


@pytest.mark.parametrize("url", ["ftp://host/out/", "hdfs://namenode/out", "out/dir"])
def test_an_unsupported_url_names_the_supported_schemes(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"s3://, gs://, az://.*file://, memory://"):
        sink_from_url(url, overwrite=False)


def test_gcs_and_azure_urls_build_stores_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "account")
    assert repr(sink_from_url("gs://bucket/out/", overwrite=False)).startswith(
        "ObjectStoreSink('gs://bucket/out/'"
    )
    assert sink_from_url("az://container/out/", overwrite=True).location("a.png") == (
        "az://container/out/a.png"
    )


def test_without_obstore_the_error_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['obstore'] = None\n"
        "from freepik_bg._storage import sink_from_url\n"
        "from freepik_bg import ConfigurationError\n"
        "try:\n    sink_from_url('s3://b/', overwrite=False)\n"
        "except ConfigurationError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "pip install 'freepik-bg[storage]'" in out
