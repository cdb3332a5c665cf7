"""Make the site's pictures from real runs against the local emulator.

    python docs/_tools/pictures.py

- docs/img/demo-contact-sheet.png: `freepik-bg demo`'s contact sheet (source, cutout, JPEG
  on white trimmed), for three of its samples.
- docs/img/cli-progress.svg: `freepik-bg remove` with its progress bar and summary, as a
  terminal shows them (rich records the console and saves it as SVG).

Needs the ``emulator`` and ``cli`` extras. Rerun it when the demo or the display changes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from unittest import mock

from rich.console import Console

from freepik_bg import _display, remove_backgrounds
from freepik_bg._cli import main as cli_main
from freepik_bg._demo import contact_sheet as contact_sheet_of
from freepik_bg.testing import Emulator, Fault

IMG = Path(__file__).resolve().parent.parent / "img"


#: The demo's samples shown on the home page: one of each shape and background.
SHEET_SAMPLES = ("mug-plain.jpg", "bottle-gradient.jpg", "ball-radial.jpg")


def contact_sheet(work: Path) -> Path:
    """The demo's contact sheet (`freepik_bg._demo.contact_sheet`), for three samples."""
    with Emulator() as emu:
        urls = [emu.image_url(name) for name in SHEET_SAMPLES]
        report = remove_backgrounds(
            urls, work / "sheet", api_key=emu.api_key, base_url=emu.base_url, overwrite=True
        )
        assert report.ok, report.summary()
        by_url = {item.image_url: item.location for item in report.stored}
        pairs = [
            (name, emu.sample_bytes(name), Path(str(by_url[url])))
            for name, url in zip(SHEET_SAMPLES, urls, strict=True)
        ]
    return contact_sheet_of(pairs, IMG / "demo-contact-sheet.png")


def cli_progress(work: Path) -> Path:
    # Not interactive: the bar is drawn once, at the end, rather than as frames over frames.
    console = Console(
        record=True,
        width=100,
        force_terminal=True,
        force_interactive=False,
        color_system="truecolor",
    )
    os.chdir(work)  # relative paths, as a reader would type them
    urls = Path("urls.txt")
    with Emulator(fast=True, latency=(0.05, 0.4), seed=7) as emu:
        lines = [f"{emu.image_url('mug-plain.jpg')}?sku={i}" for i in range(120)]
        lines[17] = emu.image_url("corrupt.jpg")  # one the service refuses: shown in red
        urls.write_text("\n".join(lines) + "\n")
        emu.inject("post", Fault.http_error(503), Fault.reset())  # retried, not shown
        argv = ["remove", str(urls), "-o", "cutouts", "--progress", "bar"]
        argv += ["--base-url", emu.base_url, "--rate", "40", "--burst", "20"]
        rich_display = _display.RichDisplay
        with (
            mock.patch.dict("os.environ", {"FREEPIK_API_KEY": emu.api_key}),
            mock.patch.object(_display, "RichDisplay", side_effect=lambda: rich_display(console)),
        ):
            cli_main(argv)
    target = IMG / "cli-progress.svg"
    console.save_svg(str(target), title="freepik-bg remove urls.txt -o cutouts")
    return target


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for made in (contact_sheet(Path(tmp)), cli_progress(Path(tmp))):
            print(f"wrote {made}")


if __name__ == "__main__":
    main()
