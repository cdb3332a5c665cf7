"""Outputs named after a CSV column (a SKU): safe, unique, checked before any POST."""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import freepik_bg
from freepik_bg import InvalidRequestError
from freepik_bg._input import InputLine
from freepik_bg._staging import relative_output_name
from freepik_bg._targets import resolve, safe_name
from freepik_bg.testing import Emulator

from .conftest import KEY, run_cli


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("sku,image\n" + "".join(f"{sku},{url}\n" for sku, url in rows))
    return path


def remove(emu: Emulator, csv: Path, out: Path, *extra: str) -> list[str]:
    return [
        "remove",
        str(csv),
        "-o",
        str(out),
        "--column",
        "image",
        "--name-column",
        "sku",
        "--base-url",
        emu.base_url,
        *extra,
    ]


def test_outputs_are_named_after_the_column_and_a_rerun_pays_nothing(
    emu: Emulator, tmp_path: Path
) -> None:
    a, b = emu.image_url("ball-small.png"), emu.image_url("ball-small.png") + "?v=2"
    csv = write_csv(tmp_path / "in.csv", [("SKU-1", a), ("SKU 2: blue", b), ("SKU-3", a)])
    first = run_cli(remove(emu, csv, tmp_path / "out"))
    assert first.returncode == 0, first.stderr
    names = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert names == ["SKU 2_ blue.png", "SKU-1.png", "SKU-3.png"]
    # SKU-3 is SKU-1's image: stored from the same links, not paid again.
    assert emu.stats.credits_charged == 2
    assert (tmp_path / "out" / "SKU-3.png").read_bytes() == (
        tmp_path / "out" / "SKU-1.png"
    ).read_bytes()
    again = run_cli(remove(emu, csv, tmp_path / "out"))
    assert again.returncode == 0, again.stderr
    assert emu.stats.credits_charged == 2


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("../etc/passwd", "A")], "folder separator"),
        ([("", "A")], "needs a name"),
        ([("same", "A"), ("same", "B")], "both named 'same.png'"),
        ([("é" * 130, "A")], "too long: 260 bytes"),  # 130 characters, 260 bytes
    ],
)
@pytest.mark.parametrize("extra", [[], ["--dry-run"]])
def test_bad_names_stop_the_run_before_any_post(
    emu: Emulator, tmp_path: Path, rows: list[tuple[str, str]], message: str, extra: list[str]
) -> None:
    urls = {"A": emu.image_url("ball-small.png"), "B": emu.image_url("ball-small.png") + "?b"}
    csv = write_csv(tmp_path / "in.csv", [(sku, urls[key]) for sku, key in rows])
    result = run_cli(remove(emu, csv, tmp_path / "out", *extra))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert emu.stats.posts == 0
    assert not list((tmp_path / "out").glob("*.png"))


@pytest.mark.parametrize("extra", [[], ["--format", "jpg"], ["--dry-run"]])
def test_names_that_clash_through_a_rendition_stop_the_run_before_any_post(
    emu: Emulator, tmp_path: Path, extra: list[str]
) -> None:
    # x's preview and x.preview's full size would both be x.preview.png (.jpg).
    a, b = emu.image_url("ball-small.png"), emu.image_url("ball-small.png") + "?b"
    csv = write_csv(tmp_path / "in.csv", [("x", a), ("x.preview", b)])
    sizes = ["--size", "high_resolution,preview", "--concurrency", "4"]
    result = run_cli(remove(emu, csv, tmp_path / "out", *sizes, *extra))
    assert result.returncode == 2, result.stderr
    ext = "jpg" if extra == ["--format", "jpg"] else "png"
    assert f"both named 'x.preview.{ext}'" in result.stderr
    assert emu.stats.posts == 0
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_missing_name_column_lists_the_columns(emu: Emulator, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "in.csv", [("A", emu.image_url("ball-small.png"))])
    result = run_cli(
        [
            "remove",
            str(csv),
            "-o",
            str(tmp_path / "o"),
            "--column",
            "image",
            "--name-column",
            "code",
            "--base-url",
            emu.base_url,
        ]
    )
    assert result.returncode == 2
    assert "sku" in result.stderr
    assert "code" in result.stderr


def test_safe_name_keeps_names_readable_and_refuses_paths() -> None:
    assert safe_name("  A/B ".replace("/", "-")) == "A-B"
    assert safe_name('a<b>c:"d"|e?f*') == "a_b_c__d__e_f_"
    assert safe_name(".hidden") == "_hidden"
    assert len(safe_name("x" * 500)) == 150
    assert safe_name("é" * 100) == "é" * 100  # 200 bytes: fits with '.preview.png'
    with pytest.raises(InvalidRequestError, match="too long: 202 bytes"):
        safe_name("é" * 101)
    for bad in ("a/b", "..", "a\\b", "   "):
        with pytest.raises(InvalidRequestError):
            safe_name(bad)
    assert resolve(InputLine(2, "https://e.com/a.png", "SKU")).output("preview") == (
        "SKU.preview.png"
    )


@pytest.mark.anyio
async def test_the_sdk_refuses_a_taken_name_per_item_without_paying(emu: Emulator) -> None:
    a, b = emu.image_url("ball-small.png"), emu.image_url("ball-small.png") + "?b"
    entries = [InputLine(2, a, "X"), InputLine(3, b, "X"), InputLine(4, a, "Y")]
    sink = freepik_bg.MemorySink()
    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        report = await client.run_batch(entries, sink, rate=None)
    assert sorted(sink.data) == ["X.png", "Y.png"]
    assert "names must be unique" in str(report.failed[0].error)
    assert emu.stats.credits_charged == 1


@pytest.mark.anyio
@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("memory", [False, True])
async def test_the_sdk_refuses_a_name_that_clashes_through_a_rendition_before_paying(
    emu: Emulator, tmp_path: Path, concurrency: int, memory: bool
) -> None:
    # 'x' with its preview is x.preview.png, as is 'x.preview' in full size: the second
    # must fail before its POST, never overwrite (or pass for) the first's paid output.
    a, b = emu.image_url("ball-small.png"), emu.image_url("ball-small.png") + "?b"
    entries = [InputLine(2, a, "x"), InputLine(3, b, "x.preview")]
    sink = freepik_bg.MemorySink()
    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        report = await client.run_batch(
            entries,
            sink if memory else tmp_path,
            size=("high_resolution", "preview"),
            concurrency=concurrency,
            rate=None,
        )
    [failed] = report.failed
    assert isinstance(failed.error, freepik_bg.OutputConflictError)
    assert "x.preview.png" in str(failed.error)
    assert emu.stats.credits_charged == 1
    [ok] = report.stored
    names = sorted(Path(p).name for p in ok.locations.values())
    assert names == sorted(sink.data if memory else (p.name for p in tmp_path.glob("*.png")))


def test_derived_names_are_shortened_by_bytes_and_stay_distinct() -> None:
    long = "é" * 124  # 248 bytes: a file name that fits, whose outputs would not
    one = resolve(Path(f"/photos/{long}a.jpg"))
    other = resolve(Path(f"/photos/{long}b.jpg"))
    assert one.stem != other.stem
    assert len(one.output("preview").encode()) <= 255 - 40  # room for the temp name
    assert resolve(Path("/photos/red.jpg")).stem == "red"  # names that fit never change
    assert relative_output_name(f"/p/{long}/{long}x.jpg", "/p").count("/") == 1
    for part in relative_output_name(f"/p/{'%' * 250}/{long}x.jpg", "/p").split("/"):
        assert len(part.encode()) <= 255


class NameTooLong(freepik_bg.MemorySink):
    """A destination whose filesystem refuses one name, as with errno 36."""

    def __init__(self, refused: str, when: str) -> None:
        super().__init__()
        self.refused, self.when = refused, when

    def _refuse(self, item: freepik_bg.SinkItem, when: str) -> None:
        if item.name == self.refused and when == self.when:
            raise OSError(errno.ENAMETOOLONG, "File name too long", item.name)

    async def exists(self, item: freepik_bg.SinkItem) -> str | None:
        self._refuse(item, "exists")
        return await super().exists(item)

    async def store(self, item: freepik_bg.SinkItem, chunks: AsyncIterator[bytes]) -> str:
        self._refuse(item, "store")
        return await super().store(item, chunks)


@pytest.mark.anyio
@pytest.mark.parametrize("when", ["exists", "store"])
async def test_a_name_the_sink_finds_too_long_fails_its_item_alone(
    emu: Emulator, when: str
) -> None:
    a, b = emu.image_url("ball-small.png"), emu.image_url("ball-small.png") + "?b"
    entries = [InputLine(2, a, "long"), InputLine(3, b, "short")]
    sink = NameTooLong("long.png", when)
    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        report = await client.run_batch(entries, sink, rate=None)
        plan = await freepik_bg.plan_batch(entries, sink)
    [failed] = report.failed
    assert isinstance(failed.error, freepik_bg.OutputNameError)
    assert "too long" in str(failed.error)
    assert report.stop_reason is None
    assert sorted(sink.data) == ["short.png"]
    assert emu.stats.credits_charged == (1 if when == "exists" else 2)  # none paid for nothing
    if when == "exists":
        assert plan.invalid == 1
        assert "too long" in plan.invalid_reasons[0]
