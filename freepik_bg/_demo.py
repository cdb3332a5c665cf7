"""``freepik-bg demo``: the real client against the local emulator, end to end.

It starts the emulator on loopback, runs a batch over its sample images,
and writes the cutouts, a contact sheet (source, cutout, JPEG on white) and an HTML gallery.
Needs the ``emulator`` extra (Pillow, numpy, uvicorn).
"""

from __future__ import annotations

import html
import io
import time
from pathlib import Path

import anyio
from PIL import Image, ImageDraw

from ._client import AsyncClient
from ._models import BatchReport, ItemResult
from ._transform import transform
from .testing import Emulator, SampleKind, sample_info, sample_names

__all__ = ["run_demo"]

_THUMB = 240
_LABEL = 22


def _checkerboard(size: tuple[int, int], cell: int = 12) -> Image.Image:
    board = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(board)
    for y in range(0, size[1], cell):
        for x in range(0, size[0], cell):
            if (x // cell + y // cell) % 2:
                draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=(214, 214, 214))
    return board


def _thumbnail(image: Image.Image) -> Image.Image:
    image = image.copy()
    image.thumbnail((_THUMB, _THUMB))
    return image


def contact_sheet(pairs: list[tuple[str, bytes, Path]], target: Path) -> Path:
    """A grid, one row per image: the source, its cutout on a checkerboard, and the
    cutout as ``--format jpeg --trim --margin 5%`` stores it (JPEG on white, trimmed)."""
    cell_w, cell_h = _THUMB + 20, _THUMB + _LABEL + 20
    columns = 3
    sheet = Image.new("RGB", (columns * cell_w, max(1, len(pairs)) * cell_h), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    for row, (name, original, cutout_path) in enumerate(pairs):
        top = row * cell_h
        with Image.open(io.BytesIO(original)) as source:
            before = _thumbnail(source.convert("RGB"))
        with Image.open(cutout_path) as cut:
            after = _thumbnail(cut.convert("RGBA"))
        backdrop = _checkerboard(after.size)
        backdrop.paste(after, (0, 0), after)
        jpeg = transform(cutout_path.read_bytes(), output_format="jpeg", trim=True, margin="5%")
        with Image.open(io.BytesIO(jpeg)) as flat:
            on_white = _thumbnail(flat.convert("RGB"))
        cells = ((before, name), (backdrop, "cutout"), (on_white, "JPEG on white, trimmed"))
        for column, (image, caption) in enumerate(cells):
            left = column * cell_w + 10
            sheet.paste(image, (left + (_THUMB - image.width) // 2, top + 10))
            if column == 2:  # a thin frame shows where the white JPEG ends
                draw.rectangle(
                    (
                        left + (_THUMB - image.width) // 2 - 1,
                        top + 9,
                        left + (_THUMB + image.width) // 2,
                        top + 10 + image.height,
                    ),
                    outline=(200, 200, 200),
                )
            draw.text((left, top + _THUMB + 14), caption, fill=(40, 40, 40))
    sheet.save(target)
    return target


def gallery(items: list[ItemResult], originals: dict[str, str], target: Path) -> Path:
    """A small static HTML page showing each source beside its cutout."""
    rows = []
    for item in items:
        name = item.image_url.rsplit("/", 1)[-1]
        if item.ok and item.location:
            cutout = Path(item.location).relative_to(target.parent).as_posix()
            seconds = (item.stored_at or 0) - (item.queued_at or 0)
            after = f'<img class="cut" src="{html.escape(cutout)}" alt="cutout of {name}">'
            detail = f"{seconds:.2f} s, {item.attempts} POST(s)"
        else:
            after = f'<span class="err">{html.escape(str(item.error))}</span>'
            detail = "failed"
        rows.append(
            f'<tr><td><img src="{html.escape(originals.get(name, ""))}" alt="{name}"></td>'
            f"<td>{after}</td><td><code>{html.escape(name)}</code><br>{detail}</td></tr>"
        )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>freepik-bg demo</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
td {{ padding: .5rem 1rem; vertical-align: middle; }}
img {{ max-width: 280px; max-height: 280px; }}
img.cut {{ background: repeating-conic-gradient(#ddd 0% 25%, #fff 0% 50%) 50% / 24px 24px; }}
.err {{ color: #b00; }}
</style></head><body>
<h1>freepik-bg demo</h1>
<p>Sources served by the local emulator; cutouts made by the emulator's approximation of
the real service, fetched with the real <code>freepik_bg.AsyncClient</code>.</p>
<table>
<tr><th>source</th><th>cutout</th><th></th></tr>
{chr(10).join(rows)}
</table></body></html>
"""
    target.write_text(page, encoding="utf-8")
    return target


def run_demo(output: Path, *, concurrency: int = 8) -> int:
    """Run the demo into ``output``; returns an exit code."""
    names = [n for n in sample_names() if sample_info(n).kind is SampleKind.OBJECT]
    started = time.monotonic()
    print(f"Starting the local emulator and removing {len(names)} backgrounds...")
    with Emulator() as emu:
        originals_dir = output / "originals"
        originals_dir.mkdir(parents=True, exist_ok=True)
        originals: dict[str, str] = {}
        sources: dict[str, bytes] = {}
        for name in names:
            data = emu.sample_bytes(name)
            sources[name] = data
            (originals_dir / name).write_bytes(data)
            originals[name] = f"originals/{name}"

        async def batch() -> BatchReport:
            async with AsyncClient(api_key=emu.api_key, base_url=emu.base_url) as client:
                return await client.run_batch(
                    [emu.image_url(name) for name in names],
                    output / "cutouts",
                    concurrency=concurrency,
                    overwrite=True,
                )

        report = anyio.run(batch)
    items = sorted(report.stored + report.failed, key=lambda item: item.index)
    pairs = [
        (names[item.index], sources[names[item.index]], Path(item.location))
        for item in items
        if item.ok and item.location
    ]
    sheet = contact_sheet(pairs, output / "contact-sheet.png")
    page = gallery(items, originals, output / "index.html")
    elapsed = time.monotonic() - started
    print(report.summary())
    for item in report.failed:
        print(f"  failed: {item.image_url}: {item.error}")
    print(f"Done in {elapsed:.1f} s. Look at:")
    print(f"  {sheet}   (contact sheet: source, cutout, JPEG on white)")
    print(f"  {page}   (open in a browser)")
    print(f"  {output / 'cutouts'}/   (the cutouts)")
    return 0 if report.ok else 1
