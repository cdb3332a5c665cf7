"""Sinks: names that do not collide, outputs that know their source, the user's umask."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import freepik_bg
from freepik_bg import DirectorySink, OutputConflictError, SinkError, SinkItem, output_name
from freepik_bg._sinks import SOURCE_XATTR, check_file_target, recorded_source, write_atomic
from freepik_bg.testing import Emulator

from .conftest import KEY, PNG

pytestmark = pytest.mark.anyio


async def chunks(data: bytes = PNG) -> AsyncIterator[bytes]:
    yield data


def item(url: str, name: str | None = None) -> SinkItem:
    return SinkItem(index=0, image_url=url, name=name or output_name(url), size="high_resolution")


@pytest.fixture
def umask_027() -> Iterator[None]:
    previous = os.umask(0o027)
    import freepik_bg._sinks as sinks

    sinks._MODE = None  # read the umask again
    try:
        yield
    finally:
        os.umask(previous)
        sinks._MODE = None


def test_names_carry_96_bits_and_a_readable_stem() -> None:
    name = output_name("https://cdn.example.com/shoes/red%20shoe.jpg?w=2000")
    stem, digest = name.removesuffix(".png").rsplit("-", 1)
    assert stem == "red_shoe"
    assert len(digest) * 4 == 96
    assert output_name("https://a.test/x.jpg", "preview").endswith(".preview.png")


@pytest.mark.usefixtures("umask_027")
async def test_outputs_get_the_permissions_open_would_give(tmp_path: Path) -> None:
    path = await write_atomic(tmp_path / "a.png", chunks())
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    with (tmp_path / "plain").open("w"):
        pass
    assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o640


async def test_default_umask_makes_outputs_world_readable(tmp_path: Path) -> None:
    path = await write_atomic(tmp_path / "a.png", chunks())
    reference = tmp_path / "reference"
    reference.touch()
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)


async def test_an_output_of_another_url_is_a_loud_conflict(tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path)
    mine, other = "https://a.test/mine.jpg", "https://a.test/other.jpg"
    await sink.store(item(other, name="shared.png"), chunks())
    if recorded_source(tmp_path / "shared.png") is None:
        pytest.skip(f"this filesystem keeps no {SOURCE_XATTR} xattrs")
    assert await sink.exists(item(other, name="shared.png")) == str(tmp_path / "shared.png")
    with pytest.raises(OutputConflictError, match=r"holds the cutout of https://a\.test/other"):
        await sink.exists(item(mine, name="shared.png"))


async def test_a_failed_overwrite_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "a.png"
    target.write_bytes(b"old")

    async def broken() -> AsyncIterator[bytes]:
        yield PNG[:10]
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        await write_atomic(target, broken())
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_a_file_target_is_refused_when_its_folder_is_unwritable_or_its_name_too_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_file_target(tmp_path / "new" / "a.png")  # missing folders are made by the write
    with pytest.raises(SinkError, match="too long"):
        check_file_target(tmp_path / ("x" * 300) / "a.png")
    # access() rather than the mode bits: root passes those, a read-only mount does not.
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(SinkError, match=f"cannot write to {tmp_path}: permission denied"):
        check_file_target(tmp_path / "new" / "a.png")
    assert list(tmp_path.iterdir()) == []


async def test_a_directory_at_an_output_name_is_refused_before_paying(
    emu: Emulator, tmp_path: Path
) -> None:
    urls = [emu.image_url("ball-small.png") + f"?i={i}" for i in range(2)]
    for url in urls:
        (tmp_path / output_name(url)).mkdir()
    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        report = await client.run_batch(urls, tmp_path, rate=None)
    assert len(report.failed) == 2
    for failed in report.failed:
        assert isinstance(failed.error, OutputConflictError)
        assert "a directory is in the way" in str(failed.error)
        assert "nothing was sent" in str(failed.error)
    assert emu.stats.posts == 0
    assert emu.stats.credits_charged == 0
    assert all(p.is_dir() and not any(p.iterdir()) for p in tmp_path.iterdir())


def things_in_the_way(folder: Path) -> dict[str, str]:
    """Names in ``folder`` that no write could store a file under, and what is there."""
    (folder / "dir.png").mkdir()
    (folder / "to-dir.png").symlink_to(folder / "dir.png")
    (folder / "broken.png").symlink_to(folder / "nowhere")
    os.mkfifo(folder / "fifo.png")
    (folder / "shoes").write_bytes(b"")
    (folder / "bags").symlink_to(folder / "nowhere")
    (folder / "target.png").write_bytes(PNG)
    (folder / "to-file.png").symlink_to(folder / "target.png")
    return {
        "dir.png": "a directory",
        "to-dir.png": "a directory",
        "broken.png": "a broken symbolic link",
        "fifo.png": "something other than a file",
        "shoes/red.png": f"a file in place of the folder {folder / 'shoes'}",
        "shoes/deeper/red.png": f"a file in place of the folder {folder / 'shoes'}",
        "bags/tote.png": f"a broken symbolic link in place of the folder {folder / 'bags'}",
        "bags/deeper/tote.png": f"a broken symbolic link in place of the folder {folder / 'bags'}",
    }


async def test_exists_names_what_is_in_the_way(tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path)
    url = "https://a.test/x.jpg"
    for name, what in things_in_the_way(tmp_path).items():
        with pytest.raises(OutputConflictError, match=f"^{re.escape(what)} is in the way at "):
            await sink.exists(item(url, name=name))
    assert await sink.exists(item(url, name="missing.png")) is None
    assert await sink.exists(item(url, name="to-file.png")) == str(tmp_path / "to-file.png")


async def test_overwrite_refuses_what_is_in_the_way_and_replaces_a_file(tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path, overwrite=True)
    url = "https://a.test/x.jpg"
    for name, what in things_in_the_way(tmp_path).items():
        with pytest.raises(OutputConflictError, match=f"^{re.escape(what)} is in the way at "):
            await sink.check_replaceable(item(url, name=name))
    for name in ("missing.png", "new/folder/a.png", "target.png", "to-file.png"):
        await sink.check_replaceable(item(url, name=name))
    await sink.store(item(url, name="target.png"), chunks(PNG + b"new"))
    assert (tmp_path / "target.png").read_bytes() == PNG + b"new"


async def test_overwrite_replaces_files_and_refuses_a_directory_before_paying(
    emu: Emulator, tmp_path: Path
) -> None:
    replaced, blocked = (emu.image_url("ball-small.png") + f"?o={i}" for i in range(2))
    (tmp_path / output_name(replaced)).write_bytes(b"old")
    (tmp_path / output_name(blocked)).mkdir()
    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        report = await client.run_batch([replaced, blocked], tmp_path, rate=None, overwrite=True)
    assert emu.stats.posts == 1  # the replaced file's only
    assert emu.stats.credits_charged == 1
    assert [r.image_url for r in report.stored] == [replaced]
    assert (tmp_path / output_name(replaced)).read_bytes()[:8] == PNG[:8]
    [failed] = report.failed
    assert isinstance(failed.error, OutputConflictError)
    assert str(failed.error).startswith("a directory is in the way at")
    assert "nothing was sent" in str(failed.error)
    assert not any((tmp_path / output_name(blocked)).iterdir())


@pytest.mark.parametrize("overwrite", [False, True])
async def test_a_directory_made_during_the_run_is_named_at_store(
    tmp_path: Path, overwrite: bool
) -> None:
    sink = DirectorySink(tmp_path, overwrite=overwrite)
    url = "https://a.test/x.jpg"
    assert await sink.exists(item(url)) is None  # checked before the POST: free then
    (tmp_path / output_name(url)).mkdir()  # ... and taken before the store
    with pytest.raises(OutputConflictError) as caught:
        await sink.store(item(url), chunks())
    assert str(caught.value).startswith(f"a directory is in the way at {tmp_path}")
    assert "another item or process" not in str(caught.value)
    assert [p.name for p in tmp_path.iterdir()] == [output_name(url)]
