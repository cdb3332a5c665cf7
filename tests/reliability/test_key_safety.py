"""Key safety: the key goes to the API origin only, and shows up nowhere else.

Two loopback servers record every request: the emulator (the API origin) and a
plain server standing as "another origin" that links and POSTs redirect to.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import freepik_bg
from freepik_bg.testing import Emulator, Fault, FaultRule

from ._servers import OriginServer
from .conftest import HTTP_BACKENDS, KEY, MAX_RETRIES, TRANSPORTS, assert_no_key, error_texts

pytestmark = pytest.mark.anyio

SAMPLE = "ball-small.png"


def hostile_rules(other: str) -> list[FaultRule]:
    return [
        FaultRule("post", Fault.redirect(f"{other}/steal-post"), 0.1),
        FaultRule("post", Fault.reset(), 0.1),
        FaultRule("post", Fault.http_error(500), 0.1),
        FaultRule("post", Fault.http_error(429), 0.1),
        FaultRule("post", Fault.malformed_json(), 0.05),
        FaultRule("download", Fault.redirect(f"{other}/steal-download.png"), 0.3),
        FaultRule("download", Fault.redirect(f"{other}/steal-303.png", status=303), 0.05),
        FaultRule("download", Fault.redirect_loop(), 0.1),
        FaultRule("download", Fault.truncate(0.5), 0.1),
        FaultRule("download", Fault.not_png(), 0.05),
    ]


@TRANSPORTS
async def test_key_only_to_the_api_origin_and_in_no_log_repr_or_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, http_backend: str
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "freepik_bg", "freepik_bg.testing"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    events: list[freepik_bg.ProgressEvent] = []
    journal = tmp_path / "journal.jsonl"
    async with Emulator(api_key=KEY, fast=True, seed=21) as emu:
        with OriginServer(emu.sample_bytes(SAMPLE)) as other:
            emu.configure(fault_rules=hostile_rules(other.base_url))
            urls = [emu.image_url(SAMPLE) + f"?k={i}" for i in range(60)]
            async with freepik_bg.AsyncClient(
                KEY, base_url=emu.base_url, max_retries=MAX_RETRIES, http_backend=http_backend
            ) as client:
                with anyio.fail_after(30):
                    report = await client.run_batch(
                        urls,
                        tmp_path / "out",
                        concurrency=8,
                        rate=None,
                        journal=journal,
                        progress=events.append,
                    )
                client_reprs = [repr(client), str(client), repr(client.retry_policy)]
            log = emu.stats.log
            seen_elsewhere = other.requests

    # The emulator saw the key on its own origin; the other origin never did.
    assert any(r.sent_key(KEY) for r in log if r.endpoint == "post")
    assert all(r.sent_key(KEY) for r in log if r.api_key_sent)
    assert seen_elsewhere, "nothing was redirected to the other origin"
    assert all(r.method == "GET" for r in seen_elsewhere), "a POST redirect was followed"
    for request in seen_elsewhere:
        assert "x-freepik-api-key" not in request.headers
        assert_no_key(request.headers.values())
    # Redirected downloads succeeded there, so the batch did both kinds of work.
    assert report.stored
    assert report.failed

    results = (*report.stored, *report.failed)
    errors = [r.error for r in report.failed if r.error is not None]
    errors += [e.retry.error for e in events if e.retry is not None]
    assert {type(e) for e in errors} >= {
        freepik_bg.APIConnectionError,
        freepik_bg.APIStatusError,
        freepik_bg.InternalServerError,
        freepik_bg.RateLimitError,
        freepik_bg.RedirectError,
    }
    texts = [caplog.text, repr(report), report.summary(), journal.read_text(), *client_reprs]
    texts += [repr(r) for r in results] + [repr(e) for e in events]
    texts += [text for e in errors for text in error_texts(e)]
    texts += [repr(freepik_bg.Journal(journal))]
    texts += [f"{r.getMessage()} {r.args!r}" for r in caplog.records]
    assert assert_no_key(texts) > 200
    assert any(r.name.startswith("freepik_bg") for r in caplog.records)  # DEBUG was on
    if http_backend == "httpx":
        assert any(r.name.startswith("httpcore") for r in caplog.records)


def test_cli_never_prints_the_key(tmp_path: Path) -> None:
    """Failures and retries at -vv, key from --api-key-file: stdout, stderr, report, journal."""
    key_file = tmp_path / "key.txt"
    key_file.write_text(KEY + "\n")
    rules = [
        FaultRule("post", Fault.http_error(500), 0.3),
        FaultRule("post", Fault.malformed_json(), 0.2),
        FaultRule("post", Fault.reset(), 0.1),
        FaultRule("download", Fault.truncate(0.5), 0.3),
    ]
    with Emulator(api_key=KEY, fast=True, seed=4, fault_rules=rules) as emu:
        listing = tmp_path / "urls.txt"
        urls = [emu.image_url(SAMPLE) + f"?c={i}" for i in range(30)] + ["ftp://bad/x.jpg"]
        listing.write_text("\n".join(urls) + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FREEPIK_")}
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "freepik_bg",
                "remove",
                str(listing),
                "-o",
                str(tmp_path / "out"),
                "--report",
                str(tmp_path / "report.json"),
                "--base-url",
                emu.base_url,
                "--api-key-file",
                str(key_file),
                "--max-retries",
                "1",
                "--rate",
                "off",
                "-vv",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Internal Server Error" in result.stdout + result.stderr  # failures were printed
    journal = tmp_path / "out" / ".freepik-bg-journal.jsonl"
    assert_no_key(
        [
            result.stdout,
            result.stderr,
            (tmp_path / "report.json").read_text(),
            journal.read_text(),
        ]
    )


@HTTP_BACKENDS
async def test_connection_errors_do_not_carry_the_key(http_backend: str) -> None:
    """An APIConnectionError keeps the request it failed on, minus the key.

    Regression test: it used to keep the httpx request headers and all, so
    ``error.request.headers`` showed the key and ``pickle.dumps(error)``
    (multiprocessing, task queues, error reporters) carried it in clear.
    """
    async with Emulator(api_key=KEY, fast=True) as emu:
        emu.inject("post", Fault.reset())
        async with freepik_bg.AsyncClient(
            KEY, base_url=emu.base_url, max_retries=0, http_backend=http_backend
        ) as client:
            with pytest.raises(freepik_bg.APIConnectionError) as caught:
                await client.remove_background(emu.image_url(SAMPLE))
    error = caught.value
    assert error.request is not None
    assert error.request.url.path.endswith("/remove-background")  # still useful
    assert KEY not in repr(list(error.request.headers.items()))
    assert KEY.encode() not in pickle.dumps(error)


@HTTP_BACKENDS
async def test_the_chained_transport_error_does_not_carry_the_key_either(
    http_backend: str,
) -> None:
    """Dask installs tblib, which pickles ``__cause__`` too: the chain must be clean.

    Regression test: the httpx error chained as ``__cause__`` kept its request, key
    and all, so a Dask task's failure (pickled by tblib) carried the key in clear.
    """
    pickling_support = pytest.importorskip("tblib.pickling_support")
    async with Emulator(api_key=KEY, fast=True) as emu:
        emu.inject("post", Fault.reset())
        async with freepik_bg.AsyncClient(
            KEY, base_url=emu.base_url, max_retries=0, http_backend=http_backend
        ) as client:
            with pytest.raises(freepik_bg.APIConnectionError) as caught:
                await client.remove_background(emu.image_url(SAMPLE))
    error = caught.value
    assert error.__cause__ is not None  # kept: it is what a debugger wants to see
    pickling_support.install(error)  # this exception only, not the whole process
    assert KEY.encode() not in pickle.dumps(error)
