"""The journal's hand-built lines: byte for byte what ``json.dumps`` of the record wrote
before them, for any strings; the odd field type still encoded as json would; a line is
with the OS once the call returns (a kill -9 right after loses nothing)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from freepik_bg import Cutout, InternalServerError, ItemResult, Journal, _journal_lines as lines

from .conftest import links

MESSY = [
    "https://a.test/plain.jpg",
    'https://a.test/"quoted"\\back\\slash.jpg',
    "https://a.test/ctl\x00\x01\x1f\t\n\r\x7f.jpg",
    "https://a.test/é中文😀\u2028\u2029.jpg",
    "https://a.test/</script>&<'>.jpg",
    "https://a.test/lone\udcff\ud800.jpg",  # undecodable bytes, as surrogateescape gives
    "",
]


def old_line(record: dict[str, Any]) -> str:
    # What the journal wrote before the templates: json.dumps of the record dict.
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def old_stored(ts: str, sizes: list[str], name: str | None, result: ItemResult) -> str:
    record = result.to_record()
    del record["status"]
    named = {} if name is None else {"name": name}
    head = {"v": 1, "ts": ts, "event": "stored", "size": sizes[0], "sizes": sizes}
    return old_line({**head, **named, **record} | {"error": None})


@pytest.mark.parametrize("text", MESSY)
def test_posted_line_is_what_json_dumps_wrote(text: str) -> None:
    answer = {k: f"{v}?{text}" for k, v in links().items()}
    cutout = Cutout.from_response(answer, image_url=text or "https://a.test/x.jpg")
    ts, received = lines.utc_stamp(), cutout.received_at.isoformat()
    expected = old_line(
        {
            "v": 1,
            "ts": ts,
            "event": "posted",
            "index": 7,
            "url": cutout.image_url,
            "received_at": received,
            "links": {k: getattr(cutout, k) for k in ("original", "high_resolution", "preview")}
            | {"url": cutout.url},
        }
    )
    assert lines.posted_line(ts, 7, received, cutout) == expected


@pytest.mark.parametrize("text", MESSY)
@pytest.mark.parametrize(
    ("sizes", "located", "name", "location", "duplicate_of"),
    [
        (["high_resolution"], 0, None, "out/a.png", None),
        (["high_resolution"], 1, None, "out/a.png", None),
        (["preview", "original"], 2, "SKU-1", None, 3),
        (["original"], 1, "", "", 0),
    ],
)
def test_stored_line_is_what_json_dumps_wrote(
    text: str,
    sizes: list[str],
    located: int,
    name: str | None,
    location: str | None,
    duplicate_of: int | None,
) -> None:
    result = ItemResult(
        index=12,
        image_url=text,
        ok=True,
        location=location if location is None else location + text,
        locations={size: f"out/{size}{text}.png" for size in sizes[:located]},
        attempts=2,
        ambiguous_retries=1,
        resubmits=4,
        duplicate_of=duplicate_of,
    )
    messy_name = None if name is None else name + text
    ts = lines.utc_stamp()
    assert lines.stored_line(ts, sizes, messy_name, result) == old_stored(
        ts, sizes, messy_name, result
    )


def odd(**fields: Any) -> ItemResult:
    return ItemResult(**({"index": 1, "image_url": "https://a.test/x", "ok": True} | fields))


@pytest.mark.parametrize(
    "result",
    [
        odd(index=True),  # json writes true, where int.__repr__ would write 1
        odd(attempts=2.5),
        odd(duplicate_of=False),
        odd(locations={"preview": None}),
        odd(location=7),
    ],
    ids=repr,
)
def test_an_odd_field_type_is_encoded_as_json_would(result: ItemResult) -> None:
    ts = lines.utc_stamp()
    assert lines.stored_line(ts, ["preview"], None, result) == old_stored(
        ts, ["preview"], None, result
    )


def test_a_field_json_cannot_encode_is_json_dumps_own_error() -> None:
    with pytest.raises(TypeError, match="PosixPath is not JSON serializable"):
        lines.stored_line(lines.utc_stamp(), ["preview"], None, odd(location=Path("a.png")))


@pytest.mark.parametrize(
    "now",
    [1_700_000_000.0, 1_700_000_000.0855734, 1_700_000_000.9999996, 4_102_444_799.5, 0.25],
)
def test_the_stamp_is_isoformat_of_now(monkeypatch: pytest.MonkeyPatch, now: float) -> None:
    monkeypatch.setattr(lines.time, "time", lambda: now)
    assert lines.utc_stamp() == datetime.fromtimestamp(now, timezone.utc).isoformat()


def test_a_lone_surrogate_is_written_as_an_escape_and_reads_back(tmp_path: Path) -> None:
    # Before, such a URL raised UnicodeEncodeError out of the journal, ending the batch.
    path = tmp_path / "j.jsonl"
    url = "https://a.test/\udcff.jpg"
    journal = Journal(path)
    journal.record_posted(0, Cutout.from_response(links(), image_url=url))
    journal.record(ItemResult(index=0, image_url=url, ok=True, location="x"))
    failure = InternalServerError("boom", status_code=500)
    journal.record(ItemResult(index=1, image_url=url + "2", ok=False, error=failure))
    journal.close()
    text = path.read_bytes().decode("utf-8")  # valid UTF-8, every line
    assert "\\udcff" in text
    assert [json.loads(line)["url"] for line in text.splitlines()] == [url, url, url + "2"]
    again = Journal(path)
    assert again.torn_lines == 0
    assert again.is_stored(url)
    assert again.live_cutout(url) is not None


def test_every_line_is_in_the_file_when_the_call_returns(tmp_path: Path) -> None:
    # kill -9 right after record_posted / record returned: no line is lost, whatever
    # buffering the file has (none: each line is one write() to the OS).
    path = tmp_path / "j.jsonl"
    script = textwrap.dedent(
        f"""
        import os, signal
        from freepik_bg import Cutout, ItemResult, Journal
        journal = Journal({str(path)!r})
        links = {links()!r}
        for i in range(3):
            url = f"https://a.test/{{i}}.jpg"
            journal.record_posted(i, Cutout.from_response(links, image_url=url))
            if i < 2:
                journal.record(ItemResult(index=i, image_url=url, ok=True, location="x"))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run([sys.executable, "-c", script], check=False, timeout=60, env=env)
    assert proc.returncode == -signal.SIGKILL
    resumed = Journal(path)
    assert resumed.torn_lines == 0
    assert [resumed.is_stored(f"https://a.test/{i}.jpg") for i in range(3)] == [True, True, False]
    paid = resumed.pending_cutout("https://a.test/2.jpg")
    assert paid is not None
    assert paid.high_resolution == links()["high_resolution"]
