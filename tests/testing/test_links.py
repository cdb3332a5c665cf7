"""Link expiry, rate limits, latency, counters and concurrency."""

from __future__ import annotations

import time

import anyio
import httpx
import pytest

from freepik_bg.testing import REAL_API_RATE_LIMITS, Emulator, RateLimit
from freepik_bg.testing._ratelimit import RateLimiter

from .conftest import Post

SAMPLE = "ball-small.png"


def test_links_expire_after_link_ttl(emu: Emulator, client: httpx.Client, post: Post) -> None:
    links = post(SAMPLE).json()
    emu.advance_time(299)
    assert client.get(links["preview"]).status_code == 200
    emu.advance_time(2)
    for name in ("original", "high_resolution", "preview", "url"):
        response = client.get(links[name])
        assert response.status_code == 404
        assert response.json() == {"message": "Not found"}
    stats = emu.stats
    assert stats.links_expired == 4
    assert stats.links_downloaded == 1


def test_injectable_clock(client: httpx.Client) -> None:
    now = [1000.0]
    with Emulator(clock=lambda: now[0], link_ttl=5) as emu:
        headers = {"x-freepik-api-key": emu.api_key}
        data = {"image_url": emu.image_url(SAMPLE)}
        links = client.post(emu.api_url, data=data, headers=headers).json()
        now[0] += 4.9
        assert client.get(links["url"]).status_code == 200
        now[0] += 0.1
        assert client.get(links["url"]).status_code == 404


def test_expired_status_knob_and_runtime_ttl(
    emu: Emulator, client: httpx.Client, post: Post
) -> None:
    emu.configure(link_ttl=0, expired_status=410)
    links = post(SAMPLE).json()
    response = client.get(links["high_resolution"])
    assert response.status_code == 410
    assert response.json() == {"message": "Link expired"}


def test_unknown_token_and_wrong_file_name(emu: Emulator, client: httpx.Client, post: Post) -> None:
    links = post(SAMPLE).json()
    token = links["high_resolution"].split("/")[-2]
    base = emu.url_for("/v1/ai/beta/images")
    assert client.get(f"{base}/download/not-a-token/high.png").status_code == 404
    assert client.get(f"{base}/download/{token}/other.png").status_code == 404
    assert client.get(f"{base}/original/{token}/original.jpg").status_code == 404  # it is a PNG
    assert client.get(f"{base}/original/{token}/original.png").status_code == 200
    assert emu.stats.links_expired == 0


def test_rate_limit_answers_429_with_retry_after(client: httpx.Client) -> None:
    # A clock that moves only when told: a slow machine must not refill the bucket.
    now = [1000.0]
    with Emulator(clock=lambda: now[0], rate=1, burst=2) as emu:

        def post() -> httpx.Response:
            data = {"image_url": emu.image_url(SAMPLE)}
            return client.post(emu.api_url, data=data, headers={"x-freepik-api-key": emu.api_key})

        assert [post().status_code for _ in range(2)] == [200, 200]
        limited = post()
        assert limited.status_code == 429
        assert limited.json() == {"message": "Rate limit exceeded"}
        assert limited.headers["retry-after"] == "1"
        now[0] += 1.0
        assert post().status_code == 200
        stats = emu.stats
        assert stats.count("post", 429) == 1
        assert stats.credits_charged == 3


def test_retry_after_rounds_up_and_can_be_omitted(client: httpx.Client) -> None:
    # A frozen clock: real time passing between the two POSTs would refill the bucket.
    with Emulator(clock=lambda: 1000.0, rate=0.3, burst=1) as emu:
        headers = {"x-freepik-api-key": emu.api_key}
        data = {"image_url": emu.image_url(SAMPLE)}
        assert client.post(emu.api_url, data=data, headers=headers).status_code == 200
        limited = client.post(emu.api_url, data=data, headers=headers)
        assert limited.headers["retry-after"] == "4"  # 3.33 s, rounded up
        emu.configure(retry_after_header=False)
        limited = client.post(emu.api_url, data=data, headers=headers)
        assert limited.status_code == 429
        assert "retry-after" not in limited.headers


def test_rate_limits_are_per_key_and_ignore_bad_keys(client: httpx.Client) -> None:
    with Emulator(rate=1, burst=1, extra_api_keys=["k2"]) as emu:
        data = {"image_url": emu.image_url(SAMPLE)}

        def status(key: str) -> int:
            headers = {"x-freepik-api-key": key}
            return client.post(emu.api_url, data=data, headers=headers).status_code

        assert status("wrong") == 401  # rejected keys do not spend tokens
        assert [status(emu.api_key), status(emu.api_key), status("k2")] == [200, 429, 200]
        emu.configure(rate=None)
        assert [status(emu.api_key) for _ in range(3)] == [200, 200, 200]


def test_real_api_rate_limits_approximation() -> None:
    limiter = RateLimiter()
    allowed = sum(limiter.acquire("key", REAL_API_RATE_LIMITS, now=0.0) is None for _ in range(300))
    assert allowed == 250
    # Sustained: one second later, 50 more.
    allowed = sum(limiter.acquire("key", REAL_API_RATE_LIMITS, now=1.0) is None for _ in range(100))
    assert allowed == 50


def test_rate_limit_validation() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimit(rate=0, burst=1)
    with pytest.raises(ValueError, match="either"):
        Emulator(rate=1, rate_limits=[RateLimit(1, 1)])


def test_latency(client: httpx.Client) -> None:
    with Emulator(latency=0.3, download_latency=(0.2, 0.25), seed=3) as emu:
        headers = {"x-freepik-api-key": emu.api_key}
        data = {"image_url": emu.image_url(SAMPLE)}
        started = time.monotonic()
        links = client.post(emu.api_url, data=data, headers=headers).json()
        assert time.monotonic() - started >= 0.3
        started = time.monotonic()
        client.get(links["preview"])
        assert time.monotonic() - started >= 0.2
        # Rejected requests do not wait: the delay models processing.
        started = time.monotonic()
        assert client.post(emu.api_url, data=data).status_code == 401
        assert time.monotonic() - started < 0.3


@pytest.mark.anyio
async def test_max_concurrent_posts() -> None:
    async with (
        Emulator(latency=0.5, fast=True) as emu,
        httpx.AsyncClient(trust_env=False, timeout=30) as http,
    ):
        headers = {"x-freepik-api-key": emu.api_key}
        data = {"image_url": emu.image_url(SAMPLE)}
        statuses: list[int] = []

        async def one() -> None:
            response = await http.post(emu.api_url, data=data, headers=headers)
            statuses.append(response.status_code)

        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(one)
        stats = emu.stats
    assert statuses == [200] * 5
    assert stats.max_posts_in_flight == 5
    assert stats.posts_in_flight == 0
    assert stats.posts == 5


@pytest.mark.anyio
async def test_image_work_does_not_block_the_loop() -> None:
    async with (
        Emulator() as emu,
        httpx.AsyncClient(trust_env=False, timeout=60) as http,
    ):
        headers = {"x-freepik-api-key": emu.api_key}
        data = {"image_url": emu.image_url("bottle-diagonal-12mp.jpg")}
        result: list[httpx.Response] = []

        async def convert() -> None:
            result.append(await http.post(emu.api_url, data=data, headers=headers))

        checks = 0
        async with anyio.create_task_group() as group:
            group.start_soon(convert)
            while not result:
                await http.get(emu.url_for("/_emulator/health"))
                checks += 1
        assert result[0].status_code == 200
    # The 12-megapixel job takes a second or more; meanwhile the loop kept answering
    # (a blocked loop would answer the health check once, after the job).
    assert checks >= 3, checks


def test_stats_log_and_reset(emu: Emulator, client: httpx.Client, post: Post) -> None:
    links = post(SAMPLE).json()
    client.get(links["preview"])
    post(SAMPLE, key="wrong")
    stats = emu.stats
    posts = [r for r in stats.log if r.endpoint == "post"]
    assert [r.status for r in posts] == [200, 401]
    assert posts[0].sent_key(emu.api_key)
    assert not posts[1].sent_key(emu.api_key)
    assert posts[1].api_key_sent
    downloads = [r for r in stats.log if r.endpoint == "download"]
    assert [r.api_key_sent for r in downloads] == [False]
    assert all(r.api_key_sha256 != emu.api_key for r in stats.log)  # never stored in clear
    assert stats.count("post") == 2
    assert stats.count("sample", 200) == 1

    emu.reset_stats()
    stats = emu.stats
    assert stats.log == ()
    assert stats.posts == 0
    assert stats.credits_charged == 0
    assert stats.requests == {}


def test_stats_json_round_trip(emu: Emulator, post: Post) -> None:
    post(SAMPLE)
    stats = emu.stats
    assert type(stats).from_json(stats.to_json()) == stats
