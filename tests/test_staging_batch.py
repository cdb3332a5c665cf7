"""Local files through a batch: staged in moto's S3, fetched by the emulator, stored, unstaged."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("obstore")

import freepik_bg
from freepik_bg import InvalidRequestError, LocalImage, StagingError, local_images
from freepik_bg.testing import Emulator

from .conftest import CLI, KEY, cli_env, make_png, run_cli
from .storage_fixtures import (
    S3,
    SECRET_KEY,
    boto_fixture,  # noqa: F401 - fixtures
    moto_auth_fixture,  # noqa: F401
    moto_endpoint_fixture,  # noqa: F401
    s3_fixture,  # noqa: F401
    set_aws_env,
)

pytestmark = pytest.mark.anyio


def photos(root: Path) -> dict[str, bytes]:
    """A small tree of real, distinct images: relative path -> bytes."""
    tree = {
        "cover.png": make_png(40, 30),
        "shoes/red.png": make_png(48, 32),
        "shoes/blue.png": make_png(50, 30),
        "bags/tote.png": make_png(30, 44),
    }
    for name, data in tree.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return tree


def staged_keys(s3: S3) -> list[str]:
    return [key for key in s3.keys() if key.startswith("staging/")]  # noqa: SIM118 - an S3 listing


async def test_a_folder_goes_through_staging_into_a_bucket_and_is_unstaged(
    s3: S3, emu: Emulator, tmp_path: Path
) -> None:
    photos(tmp_path / "photos")
    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        report = await client.run_batch(
            local_images(tmp_path / "photos"),
            s3.url("cutouts/"),
            stage=s3.url("staging/"),
            rate=None,
        )
    assert [item.error for item in report.failed] == []
    assert sorted(s3.keys()) == [
        "cutouts/bags/tote.png",
        "cutouts/cover.png",
        "cutouts/shoes/blue.png",
        "cutouts/shoes/red.png",
    ]
    assert emu.stats.credits_charged == 4
    # The service fetched presigned links from the bucket; the reports know paths.
    item = min(report.stored, key=lambda stored: stored.index)
    assert item.image_url == os.path.abspath(tmp_path / "photos" / "cover.png")
    assert item.cutout is not None
    assert "X-Amz-Signature" not in item.cutout.image_url
    assert s3.read("cutouts/shoes/red.png").startswith(b"\x89PNG")


async def test_keep_staged_keeps_the_copies(s3: S3, emu: Emulator, tmp_path: Path) -> None:
    photos(tmp_path / "photos")
    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        report = await client.run_batch(
            local_images(tmp_path / "photos"),
            tmp_path / "out",
            stage=s3.url("staging/"),
            keep_staged=True,
        )
    assert len(report.stored) == 4
    assert len(staged_keys(s3)) == 4
    assert (tmp_path / "out" / "shoes" / "blue.png").is_file()


async def test_path_items_are_named_by_their_stem_and_bad_files_cost_nothing(
    s3: S3, emu: Emulator, tmp_path: Path
) -> None:
    good = tmp_path / "Good Shot.png"
    good.write_bytes(make_png(20, 20))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    pdf = tmp_path / "scan.jpg"
    pdf.write_bytes(b"%PDF-1.7\n" + b"0" * 100)
    huge = tmp_path / "huge.png"
    with huge.open("wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n")
        fh.truncate(21 * 1024 * 1024)
    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        report = await client.run_batch(
            [good, empty, pdf, huge], tmp_path / "out", stage=s3.url("staging/")
        )
    assert [item.location for item in report.stored] == [str(tmp_path / "out" / "Good Shot.png")]
    reasons = {Path(item.image_url).name: str(item.error) for item in report.failed}
    assert "is empty" in reasons["empty.jpg"]
    assert "looks like a PDF" in reasons["scan.jpg"]
    assert "20 MB" in reasons["huge.png"]
    assert all(isinstance(item.error, InvalidRequestError) for item in report.failed)
    assert emu.stats.posts == 1
    assert staged_keys(s3) == []  # nothing was uploaded for the bad ones, the good one is gone


async def test_a_local_file_without_a_staging_bucket_is_a_clear_error(
    emu: Emulator, tmp_path: Path
) -> None:
    (tmp_path / "a.png").write_bytes(make_png())
    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        report = await client.run_batch(
            [tmp_path / "a.png", tmp_path / "missing.png", "photos/b.png"], tmp_path / "out"
        )
    errors = [str(item.error) for item in sorted(report.failed, key=lambda item: item.index)]
    assert "pass stage=" in errors[0]
    assert "neither an http(s) URL nor a local file" in errors[1]
    assert "relative" in errors[2]
    assert "pathlib.Path('photos/b.png')" in errors[2]
    assert emu.stats.posts == 0


async def test_an_output_that_would_replace_its_input_is_refused(
    s3: S3, emu: Emulator, tmp_path: Path
) -> None:
    (tmp_path / "a.png").write_bytes(make_png())
    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        report = await client.run_batch([tmp_path / "a.png"], tmp_path, stage=s3.url("st/"))
    assert "would replace the input" in str(report.failed[0].error)
    assert emu.stats.posts == 0
    assert (tmp_path / "a.png").read_bytes() == make_png()


async def test_two_inputs_with_one_name_never_overwrite_each_other(
    s3: S3, emu: Emulator, tmp_path: Path
) -> None:
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.png").write_bytes(make_png(10 + len(folder), 10))
    entries = [tmp_path / "x" / "same.png", tmp_path / "y" / "same.png"]
    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        report = await client.run_batch(entries, tmp_path / "out", stage=s3.url("st/"))
    assert len(report.stored) == 1
    assert "names must be unique" in str(report.failed[0].error)
    assert emu.stats.posts == 1


async def test_a_staging_bucket_that_is_missing_is_refused_before_any_credit(
    s3: S3, emu: Emulator, tmp_path: Path
) -> None:
    (tmp_path / "a.png").write_bytes(make_png())
    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        with pytest.raises(StagingError, match="no-such-staging-bucket"):
            await client.run_batch(
                [tmp_path / "a.png"], tmp_path / "out", stage="s3://no-such-staging-bucket/x/"
            )
    assert emu.stats.posts == 0


async def test_resume_downloads_paid_links_without_staging_or_paying_again(
    s3: S3, emu: Emulator, tmp_path: Path
) -> None:
    photos(tmp_path / "photos")
    journal = tmp_path / "run.jsonl"
    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        first = await client.run_batch(
            local_images(tmp_path / "photos"), s3.url("out/"), stage=s3.url("st/"), journal=journal
        )
        assert len(first.stored) == 4
        again = await client.run_batch(
            local_images(tmp_path / "photos"), s3.url("out/"), stage=s3.url("st/"), journal=journal
        )
    assert len(again.skipped) == 4
    assert emu.stats.credits_charged == 4
    text = journal.read_text()
    assert "X-Amz" not in text
    assert "st/" not in text
    assert '"name":"shoes/red"' in text


async def test_a_bucket_that_refuses_uploads_mid_run_stops_the_batch_typed(
    s3: S3, emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from freepik_bg import _staging

    photos(tmp_path / "photos")
    calls = 0
    real_put = _staging.obstore.put

    def flaky_put(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError("connection refused")
        return real_put(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_staging.obstore, "put", flaky_put)
    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        report = await client.run_batch(
            local_images(tmp_path / "photos"),
            tmp_path / "out",
            stage=s3.url("st/"),
            concurrency=1,
            rate=None,
        )
    assert len(report.stored) == 1
    assert isinstance(report.failed[0].error, StagingError)
    assert "staged" in (report.stop_reason or "")
    assert emu.stats.posts == 1
    # Nothing half-written: only the one finished output, and no temporary files.
    outputs = sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")
    )
    assert [o for o in outputs if o.endswith(".png")] == ["cover.png"]
    assert not [o for o in outputs if ".part" in o]


def test_cli_runs_a_folder_through_staging_and_resumes(
    s3: S3, emu: Emulator, tmp_path: Path
) -> None:
    photos(tmp_path / "photos")
    args = ["remove", str(tmp_path / "photos"), "-o", str(tmp_path / "out")]
    args += ["--stage", s3.url("staging/"), "--base-url", emu.base_url]
    args += ["--report", str(tmp_path / "report.json")]
    first = run_cli(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")
    ) == [
        "bags/tote.png",
        "cover.png",
        "shoes/blue.png",
        "shoes/red.png",
    ]
    assert staged_keys(s3) == []
    items = json.loads((tmp_path / "report.json").read_text())["items"]
    assert {Path(i["url"]).name for i in items} == {
        "cover.png",
        "red.png",
        "blue.png",
        "tote.png",
    }
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert emu.stats.credits_charged == 4


def test_cli_refuses_local_inputs_without_stage_before_any_post(
    emu: Emulator, tmp_path: Path
) -> None:
    photos(tmp_path / "photos")
    folder = run_cli(
        [
            "remove",
            str(tmp_path / "photos"),
            "-o",
            str(tmp_path / "out"),
            "--base-url",
            emu.base_url,
        ]
    )
    assert folder.returncode == 2, folder.stderr
    assert "--stage" in folder.stderr
    assert "only fetches public" in folder.stderr
    listing = tmp_path / "list.txt"
    listing.write_text(f"{emu.image_url('ball-small.png')}\n{tmp_path / 'photos' / 'cover.png'}\n")
    mixed = run_cli(
        ["remove", str(listing), "-o", str(tmp_path / "out"), "--base-url", emu.base_url]
    )
    assert mixed.returncode == 2, mixed.stderr
    assert "line 2" in mixed.stderr
    assert emu.stats.posts == 0
    assert "Traceback" not in folder.stderr + mixed.stderr


def test_cli_goes_on_past_a_line_that_is_neither_a_url_nor_a_file(
    emu: Emulator, tmp_path: Path
) -> None:
    """A typo is one bad line, not a local file that needs --stage (which stops the run)."""
    listing = tmp_path / "list.txt"
    listing.write_text(f"{emu.image_url('ball-small.png')}\nnot a url\nphotos/missing.png\n")
    result = run_cli(
        ["remove", str(listing), "-o", str(tmp_path / "out"), "--base-url", emu.base_url]
    )
    assert result.returncode == 1, result.stderr  # some items failed; the run went on
    assert "neither an http(s) URL nor a local file" in result.stderr + result.stdout
    assert "--stage" not in result.stderr
    assert emu.stats.credits_charged == 1
    assert len(list((tmp_path / "out").glob("*.png"))) == 1


def test_cli_refuses_files_whose_names_clash_through_a_rendition(
    s3: S3, emu: Emulator, tmp_path: Path
) -> None:
    # x.jpg's preview and x.preview.jpg's full size would both be x.preview.png.
    (tmp_path / "photos").mkdir()
    for name in ("x.jpg", "x.preview.jpg"):
        (tmp_path / "photos" / name).write_bytes(b"\xff\xd8\xff")
    args = ["remove", str(tmp_path / "photos"), "-o", str(tmp_path / "out")]
    args += ["--size", "high_resolution,preview", "--stage", s3.url("st/")]
    result = run_cli([*args, "--base-url", emu.base_url])
    assert result.returncode == 2, result.stderr
    assert "both named 'x.preview.png'" in result.stderr
    # The two files are named, not their folder twice.
    assert "photos/x.jpg" in result.stderr
    assert "photos/x.preview.jpg" in result.stderr
    assert emu.stats.posts == 0
    assert staged_keys(s3) == []


def test_cli_shortens_a_file_name_too_long_for_its_outputs(
    s3: S3, emu: Emulator, tmp_path: Path
) -> None:
    # 248 bytes fit a file system; with '.preview.png' instead of '.png' they would not.
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / ("é" * 122 + "ab.png")).write_bytes(make_png(40, 30))
    args = ["remove", str(tmp_path / "photos"), "-o", str(tmp_path / "out")]
    args += ["--size", "high_resolution,preview", "--stage", s3.url("st/")]
    result = run_cli([*args, "--base-url", emu.base_url])
    assert result.returncode == 0, result.stderr
    outputs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert len(outputs) == 2
    assert all(len(name.encode()) <= 255 - 40 for name in outputs)
    assert emu.stats.credits_charged == 1
    again = run_cli([*args, "--base-url", emu.base_url])
    assert again.returncode == 0, again.stderr
    assert emu.stats.credits_charged == 1


def test_cli_refuses_an_output_inside_the_input_folder(
    s3: S3, emu: Emulator, tmp_path: Path
) -> None:
    photos(tmp_path / "photos")
    result = run_cli(
        [
            "remove",
            str(tmp_path / "photos"),
            "-o",
            str(tmp_path / "photos" / "out"),
            "--stage",
            s3.url("st/"),
            "--base-url",
            emu.base_url,
        ]
    )
    assert result.returncode == 2, result.stderr
    assert "overlap" in result.stderr
    assert emu.stats.posts == 0


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS refuses non-UTF-8 file names")
def test_cli_survives_a_symlink_loop_and_non_utf8_names(
    s3: S3, emu: Emulator, tmp_path: Path
) -> None:
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "loop").symlink_to(root)  # a folder that contains itself
    (root / "self.png").symlink_to(root / "self.png")  # ELOOP on stat
    odd = os.fsencode(root / "sub") + b"/caf\xe9.png"
    with open(odd, "wb") as fh:
        fh.write(make_png(12, 12))
    result = run_cli(
        [
            "remove",
            str(root),
            "-o",
            str(tmp_path / "out"),
            "--stage",
            s3.url("st/"),
            "--base-url",
            emu.base_url,
        ]
    )
    assert result.returncode == 0, result.stderr
    assert [p.name for p in (tmp_path / "out" / "sub").iterdir()] == ["caf%E9.png"]
    assert emu.stats.credits_charged == 1


def test_local_image_is_public() -> None:
    assert LocalImage.__module__ == "freepik_bg"


def many_photos(root: Path, n: int) -> None:
    for i in range(n):
        (root / f"p{i:02d}.png").parent.mkdir(parents=True, exist_ok=True)
        (root / f"p{i:02d}.png").write_bytes(make_png(20 + i, 20))


def start_cli(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *args], env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_stored(proc: subprocess.Popen[str], count: int) -> None:
    assert proc.stdout is not None
    seen = 0
    for line in proc.stdout:
        seen += line.startswith("ok")
        if seen == count:
            return
    raise AssertionError(f"the run ended after {seen} stored items")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_an_interrupted_staged_run_resumes_without_paying_twice(
    s3: S3, emu: Emulator, tmp_path: Path, sig: signal.Signals
) -> None:
    n = 12
    many_photos(tmp_path / "photos", n)
    emu.configure(latency=0.25)  # several POSTs are on the wire when the signal comes
    args = ["remove", str(tmp_path / "photos"), "-o", str(tmp_path / "out")]
    args += ["--stage", s3.url("staging/"), "--base-url", emu.base_url, "--rate", "off"]
    args += ["--concurrency", "4", "--progress", "plain"]
    first = start_cli(args)
    wait_for_stored(first, 2)
    # However slowly this process reads on a loaded machine, the run is still going.
    emu.configure(latency=2.0)
    first.send_signal(sig)
    first.communicate(timeout=60)
    if sig is signal.SIGINT:
        # Drained: what was sent is stored, and every staged copy is deleted.
        assert first.returncode == 130
        assert staged_keys(s3) == []
    emu.configure(latency=0.0)
    again = run_cli(args)
    assert again.returncode == 0, again.stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == n
    charged = emu.stats.credits_charged
    if sig is signal.SIGINT:
        assert charged == n
    else:
        # Only what was on the wire when the process died may be paid twice.
        assert n <= charged <= n + 4
        # Its staged copies may stay (a lifecycle rule on the prefix cleans them).
        assert len(staged_keys(s3)) <= 4


def test_cli_refuses_a_staging_bucket_it_cannot_use_before_any_post(
    s3: S3, emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos(tmp_path / "photos")
    args = ["remove", str(tmp_path / "photos"), "-o", str(tmp_path / "out")]
    args += ["--base-url", emu.base_url, "--stage"]
    missing = run_cli([*args, "s3://no-such-staging-bucket/x/"])
    assert missing.returncode == 2, missing.stderr
    assert "staging bucket" in missing.stderr
    assert "no-such-staging-bucket" in missing.stderr
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    set_aws_env(monkeypatch, f"http://127.0.0.1:{port}")
    down = run_cli([*args, s3.url("staging/")])
    assert down.returncode == 2, down.stderr
    assert f"cannot reach {s3.url('staging/')} at http://127.0.0.1:{port}" in down.stderr
    assert emu.stats.posts == 0
    assert "Traceback" not in missing.stderr + down.stderr


async def test_wrong_staging_credentials_are_refused_without_the_secret(
    s3: S3,
    emu: Emulator,
    tmp_path: Path,
    moto_auth: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "a.png").write_bytes(make_png())
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_auth[0])  # a real key id, the wrong secret
    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        with pytest.raises(StagingError, match="credentials refused") as caught:
            await client.run_batch([tmp_path / "a.png"], tmp_path / "out", stage=s3.url("st/"))
    assert SECRET_KEY not in str(caught.value) + repr(caught.value)
    assert emu.stats.posts == 0


async def test_an_upload_cancelled_halfway_is_still_deleted(
    s3: S3, emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import anyio

    from freepik_bg import _staging

    (tmp_path / "a.png").write_bytes(make_png(30, 30))
    started, release = threading.Event(), threading.Event()
    real_put = _staging.obstore.put

    def slow_put(*args: object, **kwargs: object) -> object:
        started.set()
        release.wait(30)  # the upload is on the wire when the batch is cancelled
        return real_put(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_staging.obstore, "put", slow_put)
    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        with anyio.CancelScope() as outer:
            async with client.batch(
                [tmp_path / "a.png"], tmp_path / "out", stage=s3.url("staging/")
            ) as results:
                await anyio.to_thread.run_sync(started.wait)
                outer.cancel()
                release.set()
                async for _ in results:
                    pass
    assert staged_keys(s3) == []  # the upload finished in its thread, then was deleted
    assert emu.stats.posts == 0  # and nothing was sent for it
