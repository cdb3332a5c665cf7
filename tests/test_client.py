"""Unit tests of AsyncClient against a mocked transport (respx)."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
import respx

import freepik_bg
from freepik_bg import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    Cutout,
    InsufficientCreditsError,
    InternalServerError,
    InvalidImageError,
    InvalidRequestError,
    LinkExpiredError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RedirectError,
    SinkError,
)
from freepik_bg._retries import Classification, classify_post_error, parse_retry_after
from freepik_bg.testing import Emulator

from .conftest import API, ENDPOINT, KEY, PNG, links

pytestmark = pytest.mark.anyio


def client(**kwargs: object) -> AsyncClient:
    return AsyncClient(KEY, base_url=API, **kwargs)  # type: ignore[arg-type]


def fresh_cutout(base: str = API) -> Cutout:
    return Cutout.from_response(links(base), image_url="https://img.test/a.jpg")


# -- configuration -----------------------------------------------------------


async def test_missing_key_names_the_env_var() -> None:
    with pytest.raises(ConfigurationError, match="FREEPIK_API_KEY"):
        AsyncClient()


async def test_key_and_base_url_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FREEPIK_API_KEY", KEY)
    monkeypatch.setenv("FREEPIK_BASE_URL", "http://127.0.0.1:9/")
    async with AsyncClient() as c:
        assert str(c.base_url) == "http://127.0.0.1:9"
        assert c.retry_policy.max_retries == 5


async def test_default_base_url_is_production() -> None:
    async with AsyncClient(KEY) as c:
        assert str(c.base_url) == "https://api.freepik.com"


async def test_user_http_client_is_not_closed() -> None:
    http = httpx.AsyncClient()
    async with AsyncClient(KEY, http_client=http) as c:
        assert c.http_client is http
    assert not http.is_closed
    await http.aclose()


async def test_owned_pool_has_no_pool_timeout() -> None:
    async with client(max_connections=3, timeout=5) as c:
        assert c.http_client.timeout.pool is None
        assert c.http_client.timeout.read == 5


async def test_owned_pool_builds_requests_as_httpx_does() -> None:
    """The pool we create builds its requests directly; they are what httpx would send."""
    from freepik_bg._transport import new_request

    async with (
        client(timeout=7) as c,
        httpx.AsyncClient(headers=c.http_client.headers, timeout=c.http_client.timeout) as plain,
    ):
        for method, url, headers, content in [
            ("POST", ENDPOINT, {"accept": "application/json", "x-freepik-api-key": KEY}, b"a=1"),
            ("GET", "https://cdn.test/r/high.png?sig=a%2Fb", {}, None),
        ]:
            ours = new_request(c.http_client, method, httpx.URL(url), headers, content)
            theirs = plain.build_request(method, url, headers=headers, content=content)
            assert ours.method == theirs.method
            assert ours.url == theirs.url
            assert ours.headers.multi_items() == theirs.headers.multi_items()
            assert ours.content == theirs.content
            assert ours.extensions == theirs.extensions  # the timeouts travel with it


async def test_owned_pool_sends_as_httpx_send_would(
    respx_mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    """The pool we create skips ``httpx.AsyncClient.send``, and keeps what it gives: the
    request on the response and on errors, httpx's log line, the closed-client error."""
    caplog.set_level(logging.INFO, logger="httpx")
    respx_mock.post(ENDPOINT).respond(200, json=links())
    respx_mock.get(links()["high_resolution"]).mock(side_effect=httpx.ReadError("reset"))
    c = client(max_retries=0)
    async with c:
        cutout = await c.remove_background("https://img.test/a.jpg")
        with pytest.raises(freepik_bg.APIConnectionError) as caught:
            await c.download(cutout)
    assert caught.value.request is not None
    assert str(caught.value.request.url) == links()["high_resolution"]
    assert f'HTTP Request: POST {ENDPOINT} "HTTP/1.1 200 OK"' in caplog.text
    with pytest.raises(RuntimeError, match="client has been closed"):
        await c.remove_background("https://img.test/a.jpg")


async def test_owned_pool_keeps_no_cookies(respx_mock: respx.MockRouter) -> None:
    """A cookie set by a result host (or the API) is never kept, so never sent anywhere."""
    route = respx_mock.post(ENDPOINT).respond(
        200, json=links(), headers={"set-cookie": "api=1; Path=/"}
    )
    respx_mock.get(links()["high_resolution"]).respond(
        200, content=PNG, headers={"set-cookie": "tracker=abc; Domain=api.test; Path=/"}
    )
    async with client() as c:
        for _ in range(2):
            await c.download(await c.remove_background("https://img.test/a.jpg"))
        assert not c.http_client.cookies
        with pytest.raises(TypeError, match="no cookies"):
            c.http_client.cookies = {"a": "b"}  # type: ignore[assignment]
        with pytest.raises(TypeError, match="no cookies"):
            c.http_client.cookies.set("a", "b")
        with pytest.raises(TypeError, match="no cookies"):
            c.http_client.cookies.update({"a": "b"})
        with pytest.raises(TypeError, match="no cookies"):
            c.http_client.cookies["a"] = "b"
    assert all("cookie" not in call.request.headers for call in route.calls)
    assert len(route.calls) == 2


# -- the happy path ------------------------------------------------------------


@pytest.mark.respx(assert_all_called=True)
async def test_remove_background_posts_form_with_key(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(ENDPOINT).respond(200, json={**links(), "extra": {"x": 1}})
    async with client() as c:
        cutout = await c.remove_background("https://img.test/a.jpg")
    request = route.calls.last.request
    assert request.headers["x-freepik-api-key"] == KEY
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.content == b"image_url=https%3A%2F%2Fimg.test%2Fa.jpg"
    assert cutout.high_resolution == links()["high_resolution"]
    assert cutout.image_url == "https://img.test/a.jpg"
    assert cutout.received_at.tzinfo is timezone.utc
    assert cutout.expires_at - cutout.received_at == timedelta(minutes=5)
    assert (cutout.attempts, cutout.ambiguous_retries) == (1, 0)


async def test_download_returns_bytes(respx_mock: respx.MockRouter) -> None:
    respx_mock.get(links()["high_resolution"]).respond(200, content=PNG)
    respx_mock.get(links()["preview"]).respond(200, content=PNG[:-12] + PNG[-12:])
    async with client() as c:
        assert await c.download(fresh_cutout()) == PNG
        assert await c.download(fresh_cutout(), size="preview") == PNG


async def test_download_to_is_atomic_and_complete(
    respx_mock: respx.MockRouter, tmp_path: Path
) -> None:
    respx_mock.get(links()["high_resolution"]).respond(200, content=PNG)
    async with client() as c:
        path = await c.download_to(fresh_cutout(), tmp_path / "sub" / "a.png")
    assert path.read_bytes() == PNG
    assert os.listdir(path.parent) == ["a.png"]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("taken", r"taken is a directory: give the path of a file"),
        ("a_file/out.png", r"a_file is a file, not a directory"),
        ("a_file/sub/out.png", r"a_file is a file, not a directory"),
        ("dangling/out.png", r"dangling is a broken symbolic link, not a directory"),
        ("dangling/sub/out.png", r"dangling is a broken symbolic link, not a directory"),
    ],
)
async def test_remove_background_to_refuses_a_bad_path_before_paying(
    emu: Emulator, tmp_path: Path, target: str, message: str
) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "a_file").write_bytes(b"")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    async with AsyncClient(KEY, base_url=emu.base_url) as c:
        with pytest.raises(SinkError, match=message) as caught:
            await c.remove_background_to(emu.image_url("ball-small.png"), tmp_path / target)
    assert "nothing was sent" in str(caught.value)
    assert caught.value.cutout is None
    assert emu.stats.posts == 0
    assert emu.stats.credits_charged == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "dangling", "taken"]
    assert list((tmp_path / "taken").iterdir()) == []


async def test_remove_background_to_keeps_the_paid_cutout_when_the_write_fails(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def disk_full(path: Path, chunks: AsyncIterator[bytes]) -> Path:
        async for _ in chunks:
            pass
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("freepik_bg._client.write_atomic", disk_full)
    url = emu.image_url("ball-small.png")
    async with AsyncClient(KEY, base_url=emu.base_url) as c:
        with pytest.raises(SinkError, match="paid for but not written") as caught:
            await c.remove_background_to(url, tmp_path / "out.png")
        error = caught.value
        assert isinstance(error.__cause__, OSError)
        assert "No space left on device" in str(error)
        assert error.cutout is not None
        assert error.cutout.image_url == url
        monkeypatch.undo()
        # The paid result is stored from the error, without a second credit.
        path = await c.download_to(error.cutout, tmp_path / "out.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert emu.stats.posts == 1
    assert emu.stats.credits_charged == 1


async def test_remove_background_to_keeps_the_paid_cutout_when_the_download_fails(
    respx_mock: respx.MockRouter, tmp_path: Path
) -> None:
    respx_mock.post(ENDPOINT).respond(200, json=links())
    respx_mock.get(links()["high_resolution"]).respond(200, content=b"<html>oops</html>")
    async with client(max_retries=0) as c:
        with pytest.raises(InvalidImageError) as caught:
            await c.remove_background_to("https://img.test/a.jpg", tmp_path / "a.png")
    assert caught.value.cutout is not None
    assert caught.value.cutout.high_resolution == links()["high_resolution"]
    assert os.listdir(tmp_path) == []


# -- status to error -------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (400, {"message": "Failed to download the image"}, BadRequestError, "Failed to download"),
        (422, {"message": "Unprocessable"}, BadRequestError, "Unprocessable"),
        (401, {"message": "Invalid API key"}, AuthenticationError, "Invalid API key"),
        (402, {"message": "No credits"}, InsufficientCreditsError, "No credits"),
        (403, {"message": "Forbidden"}, PermissionDeniedError, "Forbidden"),
        (404, {"message": "Not found"}, NotFoundError, "Not found"),
        (429, {"message": "Too many"}, RateLimitError, "Too many"),
        (500, {"message": "Internal Server Error"}, InternalServerError, "Internal Server"),
        (502, "<html>bad gateway</html>", InternalServerError, "bad gateway"),
        (503, {"message": "Service Unavailable"}, InternalServerError, "Service Unavailable"),
        (504, {}, InternalServerError, "Gateway Timeout"),
        (409, {"message": "Conflict"}, APIStatusError, "Conflict"),
    ],
)
async def test_status_maps_to_error(
    respx_mock: respx.MockRouter, status: int, body: object, error: type, message: str
) -> None:
    kwargs = {"json": body} if isinstance(body, dict) else {"text": body}
    respx_mock.post(ENDPOINT).respond(status, **kwargs)  # type: ignore[arg-type]
    async with client(max_retries=0) as c:
        with pytest.raises(error) as info:
            await c.remove_background("https://img.test/a.jpg")
    exc = info.value
    assert type(exc) is error
    assert exc.status_code == status
    assert message in str(exc)
    assert str(status) in str(exc)
    assert KEY not in str(exc)
    assert KEY not in repr(exc)


@pytest.mark.parametrize("wrapped", [False, True])
async def test_invalid_params_flat_or_wrapped(respx_mock: respx.MockRouter, wrapped: bool) -> None:
    detail = {
        "message": "Your request has invalid parameters",
        "invalid_params": [{"name": "image_url", "reason": "must be a valid URL"}],
    }
    respx_mock.post(ENDPOINT).respond(400, json={"problem": detail} if wrapped else detail)
    async with client() as c:
        with pytest.raises(BadRequestError) as info:
            await c.remove_background("https://img.test/a.jpg")
    assert info.value.invalid_params == (
        freepik_bg.InvalidParam(name="image_url", reason="must be a valid URL"),
    )
    assert "image_url: must be a valid URL" in str(info.value)
    assert "invalid parameters" in info.value.message


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"original": "x"}', b'{"original": 1, "preview": null}', b""],
)
async def test_bad_200_body_is_a_freepik_error(respx_mock: respx.MockRouter, body: bytes) -> None:
    route = respx_mock.post(ENDPOINT).respond(200, content=body)
    async with client() as c:
        with pytest.raises(APIResponseValidationError):
            await c.remove_background("https://img.test/a.jpg")
    assert route.call_count == 1


async def test_data_wrapped_and_url_only_bodies_parse(respx_mock: respx.MockRouter) -> None:
    body = links()
    del body["high_resolution"]
    respx_mock.post(ENDPOINT).respond(200, json={"data": body})
    async with client() as c:
        cutout = await c.remove_background("https://img.test/a.jpg")
    assert cutout.high_resolution == cutout.url == links()["url"]


# -- retries and billing ----------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "retried"),
    [
        (httpx.Response(429, json={"message": "slow down"}), True),
        (httpx.Response(503, json={"message": "Service Unavailable"}), True),
        (httpx.ConnectError("refused"), True),
        (httpx.Response(500, json={"message": "Internal Server Error"}), True),
        (httpx.Response(502), True),
        (httpx.Response(504), True),
        (httpx.ReadTimeout("slow"), True),
        (httpx.RemoteProtocolError("peer closed"), True),
        (httpx.Response(400, json={"message": "bad"}), False),
        (httpx.Response(401, json={"message": "Invalid API key"}), False),
        (httpx.Response(402), False),
        (httpx.Response(403), False),
        (httpx.Response(404), False),
        (httpx.Response(422), False),
    ],
)
async def test_retry_classification_counts_requests(
    respx_mock: respx.MockRouter, failure: object, retried: bool
) -> None:
    route = respx_mock.post(ENDPOINT).mock(side_effect=[failure, httpx.Response(200, json=links())])
    async with client() as c:
        if retried:
            cutout = await c.remove_background("https://img.test/a.jpg")
            assert cutout.attempts == 2
        else:
            with pytest.raises(APIStatusError) as info:
                await c.remove_background("https://img.test/a.jpg")
            assert info.value.attempts == 1
    assert route.call_count == (2 if retried else 1)


@pytest.mark.parametrize(
    ("failure", "ambiguous"),
    [
        (httpx.Response(500), True),
        (httpx.Response(502), True),
        (httpx.Response(504), True),
        (httpx.ReadTimeout("slow"), True),
        (httpx.ReadError("reset"), True),
        (httpx.RemoteProtocolError("peer closed"), True),
        (httpx.Response(503), False),
        (httpx.Response(429), False),
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("slow connect"), False),
    ],
)
async def test_ambiguous_retries_counted_and_can_be_disabled(
    respx_mock: respx.MockRouter, failure: object, ambiguous: bool
) -> None:
    route = respx_mock.post(ENDPOINT).mock(
        side_effect=[failure, failure, httpx.Response(200, json=links())]
    )
    async with client() as c:
        cutout = await c.remove_background("https://img.test/a.jpg")
    assert (cutout.attempts, cutout.ambiguous_retries) == (3, 2 if ambiguous else 0)

    route.reset()
    route.side_effect = [failure, httpx.Response(200, json=links())]
    async with client(retry_ambiguous=False) as c:
        if ambiguous:
            with pytest.raises(freepik_bg.FreepikError) as info:
                await c.remove_background("https://img.test/a.jpg")
            assert info.value.attempts == 1
        else:
            assert (await c.remove_background("https://img.test/a.jpg")).attempts == 2
    assert route.call_count == (1 if ambiguous else 2)


async def test_max_retries_bounds_posts(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(ENDPOINT).respond(500)
    async with client(max_retries=3) as c:
        with pytest.raises(InternalServerError) as info:
            await c.remove_background("https://img.test/a.jpg")
    assert route.call_count == 4
    assert (info.value.attempts, info.value.ambiguous_retries) == (4, 3)

    route.reset()
    async with client(max_retries=0) as c:
        with pytest.raises(InternalServerError):
            await c.remove_background("https://img.test/a.jpg")
    assert route.call_count == 1


async def test_timeouts_and_connection_errors_are_typed(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(ENDPOINT).mock(side_effect=httpx.ReadTimeout("slow"))
    async with client(max_retries=1) as c:
        with pytest.raises(APITimeoutError) as info:
            await c.remove_background("https://img.test/a.jpg")
    assert isinstance(info.value, APIConnectionError)
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert info.value.maybe_processed
    assert info.value.attempts == 2


async def test_on_retry_hook_sees_events(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(ENDPOINT).mock(
        side_effect=[httpx.Response(502), httpx.Response(200, json=links())]
    )
    events: list[freepik_bg.RetryEvent] = []
    async with client(on_retry=events.append) as c:
        await c.remove_background("https://img.test/a.jpg")
    assert len(events) == 1
    assert events[0].operation == "post"
    assert events[0].ambiguous
    assert events[0].attempt == 1
    assert isinstance(events[0].error, InternalServerError)


# -- Retry-After ------------------------------------------------------------------


def test_parse_retry_after_forms() -> None:
    parse = parse_retry_after
    assert parse({}) is None
    assert parse({"Retry-After": "7"}) == 7.0
    assert parse({"retry-after": " 1.5 "}) == 1.5
    assert parse({"retry-after-ms": "250"}) == 0.25
    assert parse({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse({"retry-after-ms": "nope", "retry-after": "9"}) == 9.0
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    date = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse({"retry-after": date}, now=now.timestamp()) == pytest.approx(30)
    past = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse({"retry-after": past}, now=now.timestamp()) == 0.0
    for absurd in ["-5", "nan", "inf", "soon", "", "1e999"]:
        assert parse({"retry-after": absurd}) is None, absurd
    assert parse({"retry-after": "86400"}) == 86400.0


@pytest.mark.real_backoff
@pytest.mark.virtual_clock
async def test_retry_after_is_honoured(respx_mock: respx.MockRouter) -> None:
    import anyio

    route = respx_mock.post(ENDPOINT).mock(
        side_effect=[
            httpx.Response(429, headers={"retry-after-ms": "200"}),
            httpx.Response(200, json=links()),
        ]
    )
    events: list[freepik_bg.RetryEvent] = []
    async with client(on_retry=events.append) as c:
        start = anyio.current_time()
        await c.remove_background("https://img.test/a.jpg")
        elapsed = anyio.current_time() - start
    assert route.call_count == 2
    assert events[0].wait == pytest.approx(0.2)
    assert elapsed == pytest.approx(0.2)


@pytest.mark.real_backoff
async def test_absurd_retry_after_gives_up_at_once(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(ENDPOINT).respond(429, headers={"retry-after": "3600"})
    async with client() as c:
        with pytest.raises(RateLimitError) as info:
            await c.remove_background("https://img.test/a.jpg")
    assert route.call_count == 1
    assert info.value.retry_after == 3600.0


@pytest.mark.real_backoff
@pytest.mark.virtual_clock
async def test_backoff_grows_and_is_capped(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(ENDPOINT).respond(503)
    events: list[freepik_bg.RetryEvent] = []
    async with client(on_retry=events.append, max_retries=9) as c:
        with pytest.raises(InternalServerError):
            await c.remove_background("https://img.test/a.jpg")
    waits = [event.wait for event in events]
    assert len(waits) == 9
    assert 0.5 <= waits[0] <= 1.0
    assert 1.0 <= waits[1] <= 1.5
    assert all(w <= 8.0 for w in waits)
    assert waits[-1] >= 7.5


def test_classification_table() -> None:
    assert classify_post_error(RateLimitError("x", status_code=429)) is Classification.SAFE
    assert classify_post_error(InternalServerError("x", status_code=501)) is Classification.FATAL
    assert (
        classify_post_error(APIConnectionError("x", maybe_processed=False)) is Classification.SAFE
    )
    assert classify_post_error(ValueError()) is Classification.FATAL


# -- input validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "not a url",
        "/relative/path.jpg",
        "example.com/a.jpg",
        "ftp://example.com/a.jpg",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://",
        "https://exa mple.com/a.jpg",
        "https://example.com/" + "a" * 10_000,
        "https://example.com:99999999/a.jpg",
        None,
        42,
    ],
)
@pytest.mark.respx(assert_all_mocked=True, assert_all_called=False)
async def test_bad_input_never_reaches_the_network(
    respx_mock: respx.MockRouter, bad: object
) -> None:
    route = respx_mock.route()
    async with client() as c:
        with pytest.raises(InvalidRequestError):
            await c.remove_background(bad)  # type: ignore[arg-type]
    assert route.call_count == 0


# -- downloads ---------------------------------------------------------------------


class _Truncating(httpx.AsyncByteStream):
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data[:20]
        raise httpx.RemoteProtocolError("peer closed connection")


async def test_truncated_body_leaves_no_file(respx_mock: respx.MockRouter, tmp_path: Path) -> None:
    route = respx_mock.get(links()["high_resolution"]).mock(
        side_effect=lambda request: httpx.Response(
            200, headers={"content-length": str(len(PNG))}, stream=_Truncating(PNG)
        )
    )
    async with client(max_retries=2) as c:
        with pytest.raises(APIConnectionError):
            await c.download_to(fresh_cutout(), tmp_path / "a.png")
    assert route.call_count == 3
    assert os.listdir(tmp_path) == []


async def test_short_body_without_error_is_detected(
    respx_mock: respx.MockRouter, tmp_path: Path
) -> None:
    # No Content-Length and a clean close: only the PNG trailer check can tell.
    respx_mock.get(links()["high_resolution"]).respond(200, content=PNG[:-12])
    async with client(max_retries=1) as c:
        with pytest.raises(InvalidImageError, match="truncated"):
            await c.download_to(fresh_cutout(), tmp_path / "a.png")
    assert os.listdir(tmp_path) == []


async def test_transient_download_failure_is_retried(
    respx_mock: respx.MockRouter, tmp_path: Path
) -> None:
    route = respx_mock.get(links()["high_resolution"]).mock(
        side_effect=[
            httpx.Response(200, stream=_Truncating(PNG)),
            httpx.Response(503),
            httpx.Response(200, content=PNG),
        ]
    )
    async with client() as c:
        path = await c.download_to(fresh_cutout(), tmp_path / "a.png")
    assert route.call_count == 3
    assert path.read_bytes() == PNG
    assert os.listdir(tmp_path) == ["a.png"]


@pytest.mark.parametrize("body", [b"<html>oops</html>", b"GIF89a" + b"\0" * 50, b"", b"\x89PN"])
async def test_non_image_body_is_rejected(
    respx_mock: respx.MockRouter, tmp_path: Path, body: bytes
) -> None:
    respx_mock.get(links()["high_resolution"]).respond(200, content=body)
    async with client(max_retries=0) as c:
        with pytest.raises(InvalidImageError):
            await c.download_to(fresh_cutout(), tmp_path / "a.png")
    assert os.listdir(tmp_path) == []


async def test_size_cap_aborts_without_retry(respx_mock: respx.MockRouter, tmp_path: Path) -> None:
    route = respx_mock.get(links()["high_resolution"]).respond(
        200, headers={"content-length": str(10 * 1024**3)}, stream=_Truncating(PNG)
    )
    async with client() as c:
        with pytest.raises(InvalidImageError, match="cap"):
            await c.download_to(fresh_cutout(), tmp_path / "a.png")
    assert route.call_count == 1

    big = PNG[:-12] + b"\0" * 5000 + PNG[-12:]
    respx_mock.get(links()["preview"]).respond(200, content=big)
    async with client(max_download_bytes=1000) as c:
        with pytest.raises(InvalidImageError, match="cap"):
            await c.download(fresh_cutout(), size="preview")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_gone_link_raises_link_expired(respx_mock: respx.MockRouter, status: int) -> None:
    route = respx_mock.get(links()["high_resolution"]).respond(status)
    async with client() as c:
        with pytest.raises(LinkExpiredError) as info:
            await c.download(fresh_cutout())
    assert info.value.status_code == status
    assert route.call_count == 1
    # Refused seconds after it was issued: said so, not "it has expired" (a resubmission
    # then pays again, and the reason is not the clock).
    assert "s after it was issued" in str(info.value)
    assert "taken as expired" in str(info.value)

    issued = datetime.now(timezone.utc) - timedelta(minutes=6)
    stale = Cutout.from_response(links(), image_url="https://img.test/a.jpg", received_at=issued)
    async with client() as c:
        with pytest.raises(LinkExpiredError, match=r"it has expired \(links live 5 minutes"):
            await c.download(stale)


async def test_download_retries_stop_at_expiry(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.get(links()["high_resolution"]).respond(503)
    stale = Cutout.from_response(
        links(),
        image_url="https://img.test/a.jpg",
        received_at=datetime.now(timezone.utc) - timedelta(minutes=6),
    )
    async with client() as c:
        with pytest.raises(InternalServerError):
            await c.download(stale)
    assert route.call_count == 1


# -- key safety -------------------------------------------------------------------


async def test_key_only_sent_to_api_origin_across_redirects(
    respx_mock: respx.MockRouter,
) -> None:
    storage = "https://storage.test/bucket/high.png"
    api_hop = respx_mock.get(links()["high_resolution"]).respond(
        302, headers={"location": "https://api.test/v1/ai/beta/images/moved/high.png"}
    )
    moved = respx_mock.get("https://api.test/v1/ai/beta/images/moved/high.png").respond(
        307, headers={"location": storage}
    )
    final = respx_mock.get(storage).respond(200, content=PNG)
    async with client() as c:
        assert await c.download(fresh_cutout()) == PNG
    assert api_hop.calls.last.request.headers["x-freepik-api-key"] == KEY
    assert moved.calls.last.request.headers["x-freepik-api-key"] == KEY
    assert "x-freepik-api-key" not in final.calls.last.request.headers


@pytest.mark.parametrize(
    "other",
    ["http://api.test/x.png", "https://api.test:8443/x.png", "https://evil.api.test/x.png"],
)
async def test_key_not_sent_to_other_scheme_port_or_host(
    respx_mock: respx.MockRouter, other: str
) -> None:
    route = respx_mock.get(other).respond(200, content=PNG)
    cutout = Cutout.from_response(dict.fromkeys(links(), other), image_url="https://img.test/a.jpg")
    async with client() as c:
        await c.download(cutout)
    assert "x-freepik-api-key" not in route.calls.last.request.headers


async def test_redirect_loop_and_bad_scheme(respx_mock: respx.MockRouter) -> None:
    respx_mock.get("https://storage.test/a").respond(302, headers={"location": "/b"})
    respx_mock.get("https://storage.test/b").respond(302, headers={"location": "/a"})
    respx_mock.get("https://storage.test/c").respond(302, headers={"location": "file:///x"})
    async with client(max_retries=0) as c:
        for start, match in [("a", "loop"), ("c", "file")]:
            url = f"https://storage.test/{start}"
            cutout = Cutout.from_response(dict.fromkeys(links(), url), image_url=url)
            with pytest.raises(RedirectError, match=match):
                await c.download(cutout)


async def test_key_never_logged_or_shown(
    respx_mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    respx_mock.post(ENDPOINT).mock(
        side_effect=[
            httpx.Response(500, json={"message": "Internal Server Error"}),
            httpx.ReadTimeout("slow"),
            httpx.Response(401, json={"message": "Invalid API key"}),
        ]
    )
    async with client() as c:
        assert KEY not in repr(c)
        assert KEY not in str(c)
        with pytest.raises(AuthenticationError) as info:
            await c.remove_background("https://img.test/a.jpg")
    exc = info.value
    seen = [repr(exc), str(exc), repr(exc.__cause__), str(exc.headers), str(exc.body)]
    seen += [r.getMessage() for r in caplog.records] + [str(r.args) for r in caplog.records]
    assert caplog.records, "retries should have been logged"
    assert not [text for text in seen if KEY in text]
    # The POST went to the API: the log names the image it was for, not "POST <image>".
    retried = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert retried
    assert all(m.startswith("POST for https://img.test/a.jpg failed") for m in retried)


async def test_connection_errors_keep_the_request_but_not_the_key() -> None:
    import pickle

    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    # A transport of its own, not respx: respx's side effects chain its route (and the
    # calls it recorded, key and all) as the error's context, and once Dask's tblib
    # pickles these errors (a Dask test earlier in the session) the context is pickled.
    http = httpx.AsyncClient(transport=httpx.MockTransport(timeout))
    async with http, client(max_retries=0, http_client=http) as c:
        with pytest.raises(APITimeoutError) as info:
            await c.remove_background("https://img.test/a.jpg")
    exc = info.value
    assert exc.request is not None
    assert str(exc.request.url) == ENDPOINT
    assert "x-freepik-api-key" not in exc.request.headers
    assert KEY.encode() not in pickle.dumps(exc)


async def test_a_failed_connection_says_where_it_tried() -> None:
    # "All connection attempts failed" alone left the user guessing which host was down.
    async with AsyncClient(KEY, base_url="http://127.0.0.1:9", max_retries=0) as c:
        with pytest.raises(freepik_bg.APIConnectionError) as info:
            await c.remove_background("https://img.test/a.jpg")
    assert "(connecting to http://127.0.0.1:9)" in str(info.value)
    assert not info.value.maybe_processed
