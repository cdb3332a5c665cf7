"""Bad inputs and hostile answers: each gives its exact typed error, and the batch goes on.

All cases run in ONE batch, interleaved with good items. The batch runs one item
at a time (concurrency=1) so that the faults queued for a case, just before
the input generator hands its URL over, are drawn by that case and no other.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import cast

import anyio
import attrs
import pytest

import freepik_bg
from freepik_bg.testing import Emulator, Fault

from ._servers import OriginServer
from .conftest import (
    HTTP_BACKENDS,
    KEY,
    MAX_RETRIES,
    assert_no_key,
    assert_outputs_valid,
    error_texts,
)

pytestmark = pytest.mark.anyio

ATTEMPTS = MAX_RETRIES + 1
GOOD = "ball-small.png"


@attrs.frozen
class Case:
    """One bad input: the URL, what to set up first, and the error it must give."""

    name: str
    url: Callable[[Emulator, OriginServer], str]
    error: type[freepik_bg.FreepikError] | None  # None: it must succeed
    contains: str = ""
    status: int | None = None
    attempts: int | None = None
    setup: Callable[[Emulator, OriginServer], object] = lambda emu, other: None


def sample(name: str) -> Callable[[Emulator, OriginServer], str]:
    return lambda emu, other: emu.image_url(name)


def literal(url: object) -> Callable[[Emulator, OriginServer], str]:
    return lambda emu, other: cast(str, url)


def post_faults(*faults: Fault) -> Callable[[Emulator, OriginServer], None]:
    return lambda emu, other: emu.inject("post", *faults)


def download_faults(*faults: Fault) -> Callable[[Emulator, OriginServer], None]:
    return lambda emu, other: emu.inject("download", *faults)


def good(i: int) -> Callable[[Emulator, OriginServer], str]:
    return lambda emu, other: emu.image_url(GOOD) + f"?good={i}"


CASES = [
    # Refused locally, before any request: no credit spent.
    Case("not a URL", literal("not-a-url"), freepik_bg.InvalidRequestError, "relative"),
    Case("words", literal("not a url"), freepik_bg.InvalidRequestError, "whitespace"),
    Case("ftp", literal("ftp://example.com/a.jpg"), freepik_bg.InvalidRequestError, "'ftp'"),
    Case("file", literal("file:///etc/passwd"), freepik_bg.InvalidRequestError, "'file'"),
    Case("empty", literal(""), freepik_bg.InvalidRequestError, "empty"),
    Case("blank", literal("   "), freepik_bg.InvalidRequestError, "empty"),
    Case("not a string", literal(None), freepik_bg.InvalidRequestError, "must be a string"),
    Case(
        "10 kB URL",
        literal("https://example.com/" + "a" * 10_000 + ".jpg"),
        freepik_bg.InvalidRequestError,
        "limit is 8192",
    ),
    Case("bad host", literal("http://[::1/x.jpg"), freepik_bg.InvalidRequestError, "not a valid"),
    # Refused by the service (400s are never retried).
    Case(
        "3 kB URL",
        lambda emu, other: emu.image_url(GOOD) + "?pad=" + "p" * 3000,
        freepik_bg.BadRequestError,
        "image_url",
        400,
        1,
    ),
    Case(
        "unreachable host",
        literal("http://127.0.0.1:1/x.jpg"),
        freepik_bg.BadRequestError,
        "Failed to download the image",
        400,
        1,
    ),
    Case("GIF", sample("animated.gif"), freepik_bg.BadRequestError, "(gif)", 400, 1),
    Case("over 20 MB", sample("too-large.png"), freepik_bg.BadRequestError, "too large", 400, 1),
    Case("HTML page", sample("page.html"), freepik_bg.BadRequestError, "(html)", 400, 1),
    Case("corrupt JPEG", sample("corrupt.jpg"), freepik_bg.BadRequestError, "Invalid image", 400),
    # Hostile or broken answers.
    Case(
        "malformed JSON",
        good(100),
        freepik_bg.APIResponseValidationError,
        "not JSON",
        attempts=1,
        setup=post_faults(Fault.malformed_json()),
    ),
    Case(
        "JSON missing fields",
        good(101),
        freepik_bg.APIResponseValidationError,
        "lacks valid link(s) high_resolution, url",
        attempts=1,
        setup=post_faults(Fault.missing_fields("high_resolution", "url")),
    ),
    Case(
        "link returns non-PNG bytes",
        good(102),
        freepik_bg.InvalidImageError,
        "did not return a PNG or JPEG",
        setup=download_faults(*[Fault.not_png()] * ATTEMPTS),
    ),
    Case(
        "link truncated every time",
        good(103),
        freepik_bg.APIConnectionError,
        "RemoteProtocolError",
        setup=download_faults(*[Fault.truncate(0.5)] * ATTEMPTS),
    ),
    Case(
        "10 GB Content-Length",
        good(104),
        freepik_bg.InvalidImageError,
        "declares 10737418240 bytes",
        setup=download_faults(Fault.huge_content_length()),
    ),
    Case(
        "redirect loop",
        good(105),
        freepik_bg.RedirectError,
        "redirects",
        setup=download_faults(*[Fault.redirect_loop()] * ATTEMPTS),
    ),
    Case(
        "redirect to a file:// URL",
        good(114),
        freepik_bg.RedirectError,
        "refusing redirect to a 'file' URL",
        setup=download_faults(*[Fault.redirect("file:///etc/passwd")] * ATTEMPTS),
    ),
    Case(
        "redirect to another origin",
        good(106),
        None,
        setup=lambda emu, other: emu.inject(
            "download", Fault.redirect(f"{other.base_url}/elsewhere/high.png")
        ),
    ),
    Case(
        "expired link",
        good(107),
        freepik_bg.LinkExpiredError,
        "expired",
        setup=lambda emu, other: emu.configure(link_ttl=0),
    ),
    Case(
        "429 storm longer than the retries",
        good(108),
        freepik_bg.RateLimitError,
        "Rate limit exceeded",
        429,
        ATTEMPTS,
        setup=post_faults(*[Fault.http_error(429)] * ATTEMPTS),
    ),
    Case(
        "429 storm shorter than the retries",
        good(109),
        None,
        attempts=ATTEMPTS,
        setup=post_faults(*[Fault.http_error(429)] * MAX_RETRIES),
    ),
    Case(
        "5xx storm",
        good(110),
        freepik_bg.InternalServerError,
        "Gateway Timeout",
        504,
        ATTEMPTS,
        setup=post_faults(*[Fault.http_error(s) for s in (500, 502, 503, 504)]),
    ),
    Case(
        "5xx on the link",
        good(111),
        freepik_bg.InternalServerError,
        "Service Unavailable",
        503,
        setup=download_faults(*[Fault.http_error(503)] * ATTEMPTS),
    ),
    Case(
        "501 is not retried",
        good(112),
        freepik_bg.InternalServerError,
        "Not Implemented",
        501,
        1,
        setup=post_faults(Fault.http_error(501, message="Not Implemented")),
    ),
]


@HTTP_BACKENDS
async def test_bad_inputs_in_one_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, http_backend: str
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "freepik_bg"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    async with Emulator(api_key=KEY, fast=True, seed=3) as emu:
        png = emu.sample_bytes("ball-small.png")  # a valid image for the other origin
        with OriginServer(png) as other:
            # Every case sits between two good items.
            plan: list[Case | int] = []
            for n, case in enumerate(CASES):
                plan += [n, case]
            plan.append(len(CASES))

            async def urls() -> AsyncIterator[str]:
                for entry in plan:
                    # Isolation: whatever the previous item left queued is dropped.
                    emu.clear_faults()
                    emu.configure(link_ttl=300)
                    if isinstance(entry, int):
                        yield good(entry)(emu, other)
                    else:
                        entry.setup(emu, other)
                        yield entry.url(emu, other)

            async with freepik_bg.AsyncClient(
                KEY,
                base_url=emu.base_url,
                max_retries=MAX_RETRIES,
                timeout=10,
                http_backend=http_backend,
            ) as client:
                with anyio.fail_after(60):
                    report = await client.run_batch(
                        urls(), tmp_path / "out", concurrency=1, rate=None
                    )
            stats = emu.stats
            other_requests = other.requests

    results = {r.index: r for r in (*report.stored, *report.failed, *report.skipped)}
    assert len(results) == len(plan)
    problems = []
    for index, entry in enumerate(plan):
        result = results[index]
        if isinstance(entry, int):
            if not result.ok:
                problems.append(f"good item {index} failed: {result.error!r}")
            continue
        case = entry
        if case.error is None:
            if not result.ok:
                problems.append(f"{case.name}: expected success, got {result.error!r}")
        elif type(result.error) is not case.error:
            problems.append(f"{case.name}: expected {case.error.__name__}, got {result.error!r}")
        elif case.contains not in str(result.error):
            problems.append(f"{case.name}: {case.contains!r} not in {str(result.error)!r}")
        elif case.status is not None and (
            not isinstance(result.error, freepik_bg.APIStatusError)
            or result.error.status_code != case.status
        ):
            problems.append(f"{case.name}: expected status {case.status}, got {result.error!r}")
        if case.attempts is not None and result.attempts != case.attempts:
            problems.append(f"{case.name}: {result.attempts} attempts, not {case.attempts}")
    assert not problems, "\n".join(problems)

    by_name = {case.name: results[2 * n + 1] for n, case in enumerate(CASES)}
    # Local refusals cost nothing: no attempt at all.
    assert all(
        by_name[c.name].attempts == 0 for c in CASES if c.error is freepik_bg.InvalidRequestError
    )
    # The expired link was paid twice (resubmitted once), then given up.
    assert by_name["expired link"].resubmits == 1
    assert by_name["expired link"].attempts == 2
    assert stats.links_expired >= 2
    assert by_name["5xx storm"].ambiguous_retries == 2  # after the 500 and the 502
    # The other origin got the download, without the key.
    assert [r.target for r in other_requests] == ["/elsewhere/high.png"]
    assert "x-freepik-api-key" not in other_requests[0].headers
    assert by_name["redirect to another origin"].location is not None

    assert_outputs_valid(tmp_path / "out")
    assert_no_key(text for r in report.failed if r.error for text in error_texts(r.error))
    assert_no_key([caplog.text, repr(report)])


STOPPERS = [
    (401, freepik_bg.AuthenticationError, "Invalid API key"),
    (402, freepik_bg.InsufficientCreditsError, "Insufficient credits"),
    (403, freepik_bg.PermissionDeniedError, "Forbidden"),
    # A 429 demanding more than max_retry_after (60 s) is a block: not waited for.
    (429, freepik_bg.RateLimitError, "Rate limit exceeded"),
    # The endpoint itself answering 404 or 405 is a wrong base URL.
    (404, freepik_bg.NotFoundError, "Not found"),
    (405, freepik_bg.APIStatusError, "Method Not Allowed"),
]


@pytest.mark.parametrize(("status", "error", "message"), STOPPERS)
async def test_errors_that_stop_the_batch(
    tmp_path: Path, status: int, error: type[freepik_bg.APIStatusError], message: str
) -> None:
    async with Emulator(api_key=KEY, fast=True) as emu:
        key = KEY
        if status == 401:
            key = "sk-wrong-key"  # the real thing: the service refuses the key
        elif status == 402:
            emu.inject("post", Fault.http_error(402, message=message))
        elif status == 429:
            emu.inject("post", Fault.http_error(429, retry_after=120))
        elif status in (404, 405):
            emu.inject("post", Fault.http_error(status, message=message))
        else:
            emu.inject("post", Fault.http_error(403))
        urls = [emu.image_url(GOOD) + f"?i={i}" for i in range(20)]
        async with freepik_bg.AsyncClient(
            key, base_url=emu.base_url, max_retries=MAX_RETRIES
        ) as client:
            with anyio.fail_after(20):
                report = await client.run_batch(urls, tmp_path / "out", concurrency=1, rate=None)
        stats = emu.stats

    assert not report.stored
    assert len(report.failed) == 20
    assert stats.posts == 1  # the first one; the rest were never sent
    first = min(report.failed, key=lambda r: r.index)
    assert type(first.error) is error
    assert first.error.status_code == status
    assert message in str(first.error)
    assert first.attempts == 1  # never retried
    if status == 429:
        assert isinstance(first.error, freepik_bg.RateLimitError)
        assert first.error.retry_after == 120
    # The rest were never sent: one shared reason, not the first item's error.
    assert report.stopped_by is first.error
    for rest in report.failed:
        if rest is not first:
            assert isinstance(rest.error, freepik_bg.SkippedError)
            assert str(rest.error) == f"not attempted: {report.stop_reason}"
            assert rest.error.cause is first.error
            assert rest.attempts == 0
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
