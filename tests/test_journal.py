"""The resume journal on its own: what it remembers, what it forgets, and torn lines."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from freepik_bg import Cutout, InternalServerError, ItemResult, Journal

from .conftest import links


def cutout(url: str, age: float = 0.0) -> Cutout:
    received = datetime.now(timezone.utc) - timedelta(seconds=age)
    return Cutout.from_response(links(), image_url=url, received_at=received)


def test_done_failed_and_pending_survive_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    journal.record_posted(0, cutout("https://a.test/done.jpg"))
    journal.record(ItemResult(index=0, image_url="https://a.test/done.jpg", ok=True, location="x"))
    journal.record_posted(1, cutout("https://a.test/paid.jpg"))
    journal.record_posted(2, cutout("https://a.test/stale.jpg", age=299))
    failure = InternalServerError("boom", status_code=500)
    journal.record(ItemResult(index=3, image_url="https://a.test/bad.jpg", ok=False, error=failure))
    journal.record(ItemResult(index=4, image_url="https://a.test/s.jpg", ok=True, skipped=True))
    journal.close()

    again = Journal(path)
    assert again.is_stored("https://a.test/done.jpg")
    assert not again.is_stored("https://a.test/bad.jpg")
    assert not again.is_stored("https://a.test/paid.jpg")
    assert again.pending_cutout("https://a.test/done.jpg") is None
    pending = again.pending_cutout("https://a.test/paid.jpg")
    assert pending is not None
    assert pending.high_resolution == links()["high_resolution"]
    assert again.pending_cutout("https://a.test/stale.jpg") is None  # about to expire
    assert again.completed == 1

    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["event"] for r in records] == ["posted", "stored", "posted", "posted", "failed"]
    assert records[-1]["error"] == {
        "type": "InternalServerError",
        "message": "500: boom",
        "status_code": 500,
    }


def test_torn_lines_are_ignored_and_appending_starts_a_fresh_line(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    journal.record(ItemResult(index=0, image_url="https://a.test/1.jpg", ok=True, location="x"))
    journal.close()
    with path.open("a") as fh:
        fh.write('{"v": 1, "event": "done", "url": "https://a.te')  # a crash mid-write

    again = Journal(path)
    assert again.torn_lines == 1
    assert again.is_stored("https://a.test/1.jpg")
    again.record(ItemResult(index=1, image_url="https://a.test/2.jpg", ok=True, location="y"))
    again.close()

    final = Journal(path)
    assert final.torn_lines == 1
    assert final.is_stored("https://a.test/2.jpg")


def test_done_is_per_rendition(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    url = "https://a.test/x.jpg"
    journal.record(ItemResult(index=0, image_url=url, ok=True, location="x.png"))
    journal.record(ItemResult(index=0, image_url=url, ok=True, location="p.png"), size="preview")
    journal.close()
    again = Journal(path)
    assert again.is_stored(url)
    assert again.is_stored(url, "preview")
    assert not again.is_stored(url, "original")


def test_a_url_is_known_by_its_identity_however_a_line_spells_it(tmp_path: Path) -> None:
    # Lines hold URLs as written (and did before identities): keys are made on load.
    path = tmp_path / "j.jsonl"
    with path.open("w") as fh:
        fh.write('{"v":1,"event":"done","url":"HTTP://A.test:80/x.jpg#f","size":"preview"}\n')
    journal = Journal(path)
    journal.record_posted(0, cutout("https://a.test/paid.jpg#top"))
    named = ItemResult(index=1, image_url="HTTPS://a.TEST/n.jpg", ok=True, location="SKU.png")
    journal.record(named, name="SKU")
    journal.close()

    again = Journal(path)
    assert again.is_stored("http://a.test/x.jpg", "preview")
    assert not again.is_stored("http://a.test/X.jpg", "preview")  # a path's case counts
    assert not again.is_stored("http://a.test:8080/x.jpg", "preview")
    assert again.is_stored("https://a.test:443/n.jpg", name="SKU")
    assert again.pending_cutout("HTTPS://A.TEST:443/paid.jpg") is not None
    assert [json.loads(line)["url"] for line in path.read_text().splitlines()] == [
        "HTTP://A.test:80/x.jpg#f",
        "https://a.test/paid.jpg#top",
        "HTTPS://a.TEST/n.jpg",
    ]
