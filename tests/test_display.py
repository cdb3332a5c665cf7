"""The CLI's progress displays, rendered to strings."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from freepik_bg import InvalidRequestError, ItemResult, ProgressEvent, ProgressKind, _display
from freepik_bg._display import PlainDisplay, RichDisplay, make_display
from freepik_bg._models import BatchStats


def items() -> list[ItemResult]:
    return [
        ItemResult(index=0, image_url="https://x.test/a.jpg", ok=True, location="out/a.png"),
        ItemResult(
            index=1,
            image_url="https://x.test/[b].jpg",
            ok=False,
            error=InvalidRequestError("bad [red]thing[/red]"),
        ),
        ItemResult(index=2, image_url="https://x.test/c.jpg", ok=True, location="c", skipped=True),
    ]


def test_rich_display_shows_failures_verbatim_and_a_summary() -> None:
    buffer = io.StringIO()
    display = RichDisplay(Console(file=buffer, force_terminal=True, width=140, color_system=None))
    display.start(BatchStats(), total=3)
    for item in items():
        display.item(item)
    display.stop()
    display.summary({"ok": 1, "failed": 1, "skipped": 1}, 2.0, output="out")
    text = buffer.getvalue()
    assert "FAIL       1  https://x.test/[b].jpg: bad [red]thing[/red]" in text
    assert "3/3" in text
    assert "stored" in text
    assert "skipped (already done)" in text


def test_plain_display_lines(capsys: object) -> None:
    out = io.StringIO()
    display = PlainDisplay(quiet=False, stream=out)
    for item in items():
        display.item(item)
    display.summary({"ok": 1, "failed": 1, "skipped": 1}, 2.0, journal="j.jsonl")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("ok         0  https://x.test/a.jpg -> out/a.png")
    assert lines[1].startswith("FAIL       1")
    assert lines[2].startswith("skip       2")
    assert "1 stored, 1 failed, 1 skipped" in lines[3]
    assert lines[4] == "journal: j.jsonl"

    quiet = io.StringIO()
    display = PlainDisplay(quiet=True, stream=quiet)
    for item in items():
        display.item(item)
    assert quiet.getvalue().count("\n") == 1  # only the failure


def test_make_display_modes() -> None:
    assert isinstance(make_display("plain", quiet=False), PlainDisplay)
    assert isinstance(make_display("bar", quiet=False), RichDisplay)
    # Not a terminal under pytest: auto falls back to plain lines.
    assert isinstance(make_display("auto", quiet=False), PlainDisplay)


def _event(kind: ProgressKind) -> ProgressEvent:
    return ProgressEvent(kind, 0, "https://x.test/a.jpg")


def test_the_bar_waits_for_the_batch_s_first_news_and_its_clock_starts_with_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # rich loads after the first POST, not before it (issue #15); elapsed time still
    # counts from `start`, not from when the bar appeared.
    now = [100.0]
    monkeypatch.setattr(_display.time, "monotonic", lambda: now[0])
    buffer = io.StringIO()
    display = RichDisplay(Console(file=buffer, force_terminal=True, width=140, color_system=None))
    display.start(BatchStats(), total=2)
    display.on_event(_event(ProgressKind.QUEUED))
    assert buffer.getvalue() == ""
    now[0] = 165.0  # the first answer, 65 s later
    display.on_event(_event(ProgressKind.POSTED))
    display.stop()
    text = buffer.getvalue()
    assert "removing backgrounds" in text
    assert "0/2" in text
    assert "0:01:05" in text


def test_a_run_stopped_before_any_news_shows_no_bar_but_its_summary() -> None:
    buffer = io.StringIO()
    display = RichDisplay(Console(file=buffer, force_terminal=True, width=140, color_system=None))
    display.start(BatchStats(), total=5)
    display.interrupted(drain=True)
    display.stop()
    display.summary({"ok": 0, "failed": 0, "skipped": 0}, 0.1)
    text = buffer.getvalue()
    assert "stopping: sending nothing more" in text
    assert "removing backgrounds" not in text
    assert "skipped (already done)" in text


def test_bar_without_rich_falls_back_to_plain_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(RichDisplay, "available", staticmethod(lambda: False))
    assert isinstance(make_display("bar", quiet=False), PlainDisplay)
    assert "rich is not installed" in capsys.readouterr().err


def test_an_item_abandoned_on_the_wire_is_not_counted_as_not_attempted() -> None:
    from freepik_bg import SkippedError

    def item(attempts: int, message: str) -> ItemResult:
        return ItemResult(
            1, "https://x.test/a.jpg", ok=False, attempts=attempts, error=SkippedError(message)
        )

    assert _display.not_attempted(item(0, "not attempted: the batch was stopped"))
    # Its POST was sent and may be billed: a failure to show, not "not attempted".
    assert not _display.not_attempted(item(1, "interrupted while posting: ..."))
    assert not _display.not_attempted(
        ItemResult(1, "https://x.test/a.jpg", ok=False, error=InvalidRequestError("bad"))
    )
