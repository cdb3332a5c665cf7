"""Every fault kind is observable on the wire, with the documented billing."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from freepik_bg.testing import Emulator, Fault, FaultKind, FaultRule

from .conftest import Post

SAMPLE = "ball-small.png"


@pytest.mark.parametrize(
    ("status", "message", "charged"),
    [
        (500, "Internal Server Error", 1),
        (502, "Bad Gateway", 1),
        (503, "Service Unavailable", 0),
        (504, "Gateway Timeout", 1),
        (429, "Rate limit exceeded", 0),
    ],
)
def test_status_faults_on_post(
    emu: Emulator, post: Post, status: int, message: str, charged: int
) -> None:
    emu.inject("post", Fault.http_error(status))
    response = post(SAMPLE)
    assert response.status_code == status
    assert response.json() == {"message": message}
    assert ("retry-after" in response.headers) == (status == 429)
    stats = emu.stats
    assert stats.credits_charged == charged
    assert stats.links_issued == 0
    assert stats.faults_injected == {"post:status": 1}
    # The queue is used up: the next request is normal.
    assert post(SAMPLE).status_code == 200


def test_status_fault_billing_can_be_overridden(emu: Emulator, post: Post) -> None:
    emu.inject("post", Fault.http_error(503, after_processing=True, message="busy"))
    response = post(SAMPLE)
    assert response.json() == {"message": "busy"}
    assert emu.stats.credits_charged == 1


def test_429_fault_retry_after(emu: Emulator, post: Post) -> None:
    emu.inject("post", Fault.http_error(429, retry_after=7))
    assert post(SAMPLE).headers["retry-after"] == "7"
    emu.configure(retry_after_header=False)
    emu.inject("post", Fault.http_error(429))
    assert "retry-after" not in post(SAMPLE).headers


@pytest.mark.parametrize(("after", "charged"), [(False, 0), (True, 1)])
def test_reset_on_post(emu: Emulator, post: Post, after: bool, charged: int) -> None:
    emu.inject("post", Fault.reset(after_processing=after))
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        post(SAMPLE)
    stats = emu.stats
    assert stats.count("post", 0) == 1
    assert stats.credits_charged == charged


def test_reset_seen_by_a_raw_async_client(emu: Emulator) -> None:
    async def attempt() -> None:
        async with httpx.AsyncClient(trust_env=False) as http:
            await http.get(emu.url_for("/v1/ai/beta/images/download/x/high.png"))

    import anyio

    emu.inject("download", Fault.reset())
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        anyio.run(attempt)


def test_stall_on_post_times_out_a_client(emu: Emulator, post: Post) -> None:
    emu.inject("post", Fault.stall(30))
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        post(SAMPLE, timeout=httpx.Timeout(10.0, read=2.0))
    assert time.monotonic() - started < 10
    assert emu.stats.credits_charged == 1  # the work was done before the answer stalled


def test_stall_then_body(emu: Emulator, client: httpx.Client, post: Post) -> None:
    links = post(SAMPLE).json()
    expected = client.get(links["preview"]).content
    emu.inject("download", Fault.stall(0.3))
    with client.stream("GET", links["preview"]) as response:
        assert response.status_code == 200  # headers arrive at once
        started = time.monotonic()
        body = response.read()
    assert time.monotonic() - started >= 0.25
    assert body == expected


def test_trickle_sends_the_whole_body_slowly(
    emu: Emulator, client: httpx.Client, post: Post
) -> None:
    links = post(SAMPLE).json()
    expected = client.get(links["high_resolution"]).content
    emu.inject("download", Fault.trickle(chunk_size=1024, interval=0.02))
    started = time.monotonic()
    with client.stream("GET", links["high_resolution"]) as response:
        pieces = list(response.iter_raw())
    assert b"".join(pieces) == expected
    assert time.monotonic() - started >= 0.02 * (len(expected) // 1024 - 1)
    assert emu.stats.downloads == {"high_resolution": 2}


def test_truncated_download(emu: Emulator, client: httpx.Client, post: Post) -> None:
    links = post(SAMPLE).json()
    emu.inject("download", Fault.truncate(0.5))
    received = bytearray()

    def read_all(response: httpx.Response) -> None:
        for piece in response.iter_raw():
            received.extend(piece)

    with client.stream("GET", links["high_resolution"]) as response:
        declared = int(response.headers["content-length"])
        with pytest.raises(httpx.RemoteProtocolError):
            read_all(response)
    assert len(received) == declared // 2
    assert emu.stats.links_downloaded == 0  # an incomplete download does not count


def test_truncated_post_answer_is_still_charged(emu: Emulator, post: Post) -> None:
    emu.inject("post", Fault.truncate(0.3))
    with pytest.raises(httpx.RemoteProtocolError):
        post(SAMPLE)
    assert emu.stats.credits_charged == 1


def test_not_png_download(emu: Emulator, client: httpx.Client, post: Post) -> None:
    links = post(SAMPLE).json()
    emu.inject("download", Fault.not_png())
    response = client.get(links["high_resolution"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"<!doctype html>")


def test_malformed_json(emu: Emulator, post: Post) -> None:
    emu.inject("post", Fault.malformed_json())
    response = post(SAMPLE)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        response.json()
    stats = emu.stats
    assert stats.credits_charged == 1
    assert stats.links_issued == 0


def test_missing_fields(emu: Emulator, post: Post) -> None:
    emu.inject("post", Fault.missing_fields(), Fault.missing_fields("url", "original", "preview"))
    assert set(post(SAMPLE).json()) == {"original", "preview"}
    assert set(post(SAMPLE).json()) == {"high_resolution"}
    assert emu.stats.links_issued == 3


def test_huge_content_length(emu: Emulator, client: httpx.Client, post: Post) -> None:
    links = post(SAMPLE).json()
    emu.inject("download", Fault.huge_content_length())
    with client.stream("GET", links["high_resolution"]) as response:
        assert int(response.headers["content-length"]) == 10 * 1024**3
        with pytest.raises(httpx.RemoteProtocolError):
            response.read()


def test_same_origin_redirect_on_post(emu: Emulator, client: httpx.Client) -> None:
    emu.inject("post", Fault.redirect())
    data = {"image_url": emu.image_url(SAMPLE)}
    headers = {"x-freepik-api-key": emu.api_key}
    first = client.post(emu.api_url, data=data, headers=headers)
    assert first.status_code == 307
    assert first.headers["location"] == emu.api_url
    emu.inject("post", Fault.redirect())
    followed = client.post(emu.api_url, data=data, headers=headers, follow_redirects=True)
    assert followed.status_code == 200
    stats = emu.stats
    assert stats.count("post", 307) == 2
    assert stats.credits_charged == 1


def test_same_origin_redirect_on_download(emu: Emulator, client: httpx.Client, post: Post) -> None:
    links = post(SAMPLE).json()
    emu.inject("download", Fault.redirect(status=302))
    response = client.get(links["preview"], follow_redirects=True)
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [302]


def test_cross_origin_redirect_shows_where_the_key_went(client: httpx.Client) -> None:
    with Emulator() as api, Emulator(api_key="another-key") as elsewhere:
        target = elsewhere.url_for("/v1/ai/beta/remove-background")
        api.inject("post", Fault.redirect(target))
        headers = {"x-freepik-api-key": api.api_key}
        data = {"image_url": api.image_url(SAMPLE)}
        response = client.post(api.api_url, data=data, headers=headers, follow_redirects=True)
        # The other origin does not know the key; what matters is that it received it.
        assert response.status_code == 401
        (record,) = [r for r in elsewhere.stats.log if r.endpoint == "post"]
    assert record.api_key_sent
    assert record.sent_key(api.api_key)


def test_redirect_loop(emu: Emulator, client: httpx.Client, post: Post) -> None:
    emu.inject("post", Fault.redirect_loop())
    with pytest.raises(httpx.TooManyRedirects):
        post(SAMPLE, follow_redirects=True)
    links = post(SAMPLE).json()
    emu.inject("download", Fault.redirect_loop(status=302))
    with pytest.raises(httpx.TooManyRedirects):
        client.get(links["high_resolution"], follow_redirects=True)


def test_status_and_reset_faults_on_download(
    emu: Emulator, client: httpx.Client, post: Post
) -> None:
    links = post(SAMPLE).json()
    emu.inject("download", Fault.http_error(503), Fault.reset())
    assert client.get(links["preview"]).status_code == 503
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        client.get(links["preview"])
    assert client.get(links["preview"]).status_code == 200


def test_faults_that_do_not_fit_an_endpoint_are_refused(emu: Emulator) -> None:
    with pytest.raises(ValueError, match="not_png"):
        emu.inject("post", Fault.not_png())
    with pytest.raises(ValueError, match="malformed_json"):
        emu.inject("download", Fault.malformed_json())
    with pytest.raises(ValueError, match="endpoint"):
        FaultRule("upload", Fault.reset(), 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="add up"):
        Emulator(
            fault_rules=[
                FaultRule("post", Fault.reset(), 0.6),
                FaultRule("post", Fault.http_error(500), 0.6),
            ]
        )


def test_clear_faults(emu: Emulator, post: Post) -> None:
    emu.inject("post", Fault.http_error(500), Fault.http_error(500))
    emu.clear_faults()
    assert post(SAMPLE).status_code == 200


def _statuses(seed: int, count: int, client: httpx.Client) -> list[int]:
    rules = [
        FaultRule("post", Fault.http_error(503), 0.4),
        FaultRule("post", Fault.http_error(500), 0.2),
    ]
    with Emulator(fault_rules=rules, seed=seed, fast=True) as emu:
        data = {"image_url": emu.image_url(SAMPLE)}
        headers = {"x-freepik-api-key": emu.api_key}
        return [
            client.post(emu.api_url, data=data, headers=headers).status_code for _ in range(count)
        ]


def test_random_faults_are_repeatable_with_a_seed(client: httpx.Client) -> None:
    first = _statuses(7, 30, client)
    assert first == _statuses(7, 30, client)
    assert {200, 500, 503} <= set(first)


def test_fault_json_round_trip() -> None:
    faults = [
        Fault.http_error(429, retry_after=3),
        Fault.reset(after_processing=True),
        Fault.stall(1.5),
        Fault.trickle(10, 0.1),
        Fault.truncate(0.25),
        Fault.not_png(),
        Fault.malformed_json(),
        Fault.missing_fields("url"),
        Fault.huge_content_length(123),
        Fault.redirect("http://elsewhere.test/", status=308),
        Fault.redirect_loop(),
    ]
    assert {f.kind for f in faults} == set(FaultKind)
    for fault in faults:
        assert Fault.from_json(json.loads(json.dumps(fault.to_json()))) == fault
    rule = FaultRule("download", Fault.truncate(), 0.5)
    assert FaultRule.from_json(rule.to_json()) == rule


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="fraction"):
        Fault.truncate(1.0)
    with pytest.raises(ValueError, match="error code"):
        Fault.http_error(200)
    with pytest.raises(ValueError, match="redirect code"):
        Fault.redirect(status=200)
    with pytest.raises(ValueError, match="unknown fields"):
        Fault.missing_fields("nope")
