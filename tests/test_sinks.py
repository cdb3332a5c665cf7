"""Sinks: names that do not collide, outputs that know their source, the user's umask."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from freepik_bg import DirectorySink, OutputConflictError, SinkError, SinkItem, output_name
from freepik_bg._sinks import SOURCE_XATTR, check_file_target, recorded_source, write_atomic

from .conftest import PNG

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
