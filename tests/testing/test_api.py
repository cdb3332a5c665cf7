"""The emulated API: happy path, authentication, validation and source errors."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from freepik_bg.testing import Emulator, sample_info

from .conftest import Post

LINK_FIELDS = {"original", "high_resolution", "preview", "url"}


def _png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image


@pytest.mark.parametrize(
    ("name", "original_type"), [("mug-plain.jpg", "image/jpeg"), ("mug-plain.png", "image/png")]
)
def test_happy_path_serves_every_link(
    emu: Emulator, client: httpx.Client, post: Post, name: str, original_type: str
) -> None:
    source = client.get(emu.image_url(name)).content
    response = post(name)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    links = response.json()
    assert set(links) == LINK_FIELDS
    assert all(link.startswith(emu.base_url + "/v1/ai/beta/images/") for link in links.values())
    assert links["high_resolution"] != links["url"]  # two tokens, as in the spec's example

    high = client.get(links["high_resolution"])
    assert high.status_code == 200
    assert high.headers["content-type"] == "image/png"
    assert int(high.headers["content-length"]) == len(high.content)
    cutout = _png(high.content)
    assert cutout.mode == "RGBA"
    assert cutout.size == (800, 600)

    assert client.get(links["url"]).content == high.content

    preview = client.get(links["preview"])
    assert preview.headers["content-type"] == "image/png"
    small = _png(preview.content)
    assert small.mode == "RGBA"
    assert small.width * small.height <= 250_000
    assert small.width / small.height == pytest.approx(800 / 600, rel=0.01)

    original = client.get(links["original"])
    assert original.headers["content-type"] == original_type
    assert original.content == source

    stats = emu.stats
    assert stats.count("post", 200) == 1
    assert stats.credits_charged == 1
    assert stats.links_issued == 4
    assert stats.downloads == {"high_resolution": 1, "url": 1, "preview": 1, "original": 1}


def test_small_source_keeps_its_size_in_the_preview(client: httpx.Client, post: Post) -> None:
    links = post("ball-small.png").json()
    assert _png(client.get(links["preview"]).content).size == (160, 120)


def test_head_on_a_link_sends_headers_only(client: httpx.Client, post: Post) -> None:
    links = post("ball-small.png").json()
    full = client.get(links["high_resolution"])
    head = client.head(links["high_resolution"])
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(full.content))
    assert head.content == b""


def test_missing_api_key(emu: Emulator, post: Post) -> None:
    response = post("ball-small.png", key=None)
    assert response.status_code == 401
    assert response.json() == {"message": "Missing API key"}
    assert emu.stats.credits_charged == 0


def test_invalid_api_key(emu: Emulator, post: Post) -> None:
    response = post("ball-small.png", key="wrong")
    assert response.status_code == 401
    assert response.json() == {"message": "Invalid API key"}
    assert emu.stats.credits_charged == 0


def test_extra_api_keys_and_runtime_key_change(client: httpx.Client) -> None:
    with Emulator(api_key="first", extra_api_keys=["second"]) as emu:
        url = emu.image_url("ball-small.png")

        def status(key: str) -> int:
            headers = {"x-freepik-api-key": key}
            return client.post(emu.api_url, data={"image_url": url}, headers=headers).status_code

        assert emu.api_key == "first"
        assert (status("first"), status("second"), status("third")) == (200, 200, 401)
        emu.configure(api_key="third")
        assert (status("first"), status("third")) == (401, 200)


@pytest.mark.parametrize(
    "request_kwargs",
    [
        pytest.param({"json": {"image_url": "http://example.test/a.jpg"}}, id="json"),
        pytest.param({"files": {"image_url": ("a.jpg", b"x")}}, id="multipart"),
        pytest.param({"content": b"image_url=http://x/a.jpg"}, id="no-content-type"),
    ],
)
def test_non_form_bodies_are_refused(
    emu: Emulator, client: httpx.Client, request_kwargs: dict[str, object]
) -> None:
    headers = {"x-freepik-api-key": emu.api_key}
    response = client.post(emu.api_url, headers=headers, **request_kwargs)  # type: ignore[arg-type]
    assert response.status_code == 415
    assert "application/x-www-form-urlencoded" in response.json()["message"]


def test_missing_image_url(emu: Emulator, client: httpx.Client) -> None:
    headers = {"x-freepik-api-key": emu.api_key}
    response = client.post(emu.api_url, data={"other": "x"}, headers=headers)
    assert response.status_code == 400
    body = response.json()
    assert body["message"]
    assert body["invalid_params"] == [{"name": "image_url", "reason": "image_url is required"}]


@pytest.mark.parametrize(
    "bad_url",
    [
        "",
        "   ",
        "not a url",
        "/relative/path.jpg",
        "ftp://example.test/a.jpg",
        "http://",
        "http://h:99999/",
    ],
)
def test_invalid_image_url(post: Post, bad_url: str) -> None:
    response = post(bad_url, raw=True)
    assert response.status_code == 400
    params = response.json()["invalid_params"]
    assert [p["name"] for p in params] == ["image_url"]
    assert params[0]["reason"]


def test_invalid_params_wrapped_under_problem(client: httpx.Client) -> None:
    with Emulator(invalid_params_style="problem") as emu:
        headers = {"x-freepik-api-key": emu.api_key}
        body = client.post(emu.api_url, data={"image_url": "nope"}, headers=headers).json()
    assert "invalid_params" not in body
    assert body["problem"]["invalid_params"][0]["name"] == "image_url"
    assert body["message"]


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_source(emu: Emulator, post: Post) -> None:
    response = post(f"http://127.0.0.1:{_refused_port()}/image.jpg")
    assert response.status_code == 400
    assert response.json() == {"message": "Failed to download the image"}
    assert emu.stats.credits_charged == 0


def test_source_answering_404(emu: Emulator, post: Post) -> None:
    response = post(emu.url_for("/samples/does-not-exist.jpg"))
    assert response.status_code == 400
    assert response.json() == {"message": "Failed to download the image"}


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/slow.jpg"


def test_source_timeout(client: httpx.Client, silent_server: str) -> None:
    with Emulator(fetch_timeout=0.2) as emu:
        headers = {"x-freepik-api-key": emu.api_key}
        response = client.post(emu.api_url, data={"image_url": silent_server}, headers=headers)
    assert response.status_code == 400
    assert response.json() == {"message": "Failed to download the image"}


def test_source_redirect_loop_fails_to_download(emu: Emulator, post: Post) -> None:
    response = post(emu.url_for("/_emulator/redirect-loop/1?status=302"))
    assert response.json() == {"message": "Failed to download the image"}


@pytest.mark.parametrize(
    ("name", "needle"),
    [("animated.gif", "gif"), ("page.html", "html"), ("corrupt.jpg", "Invalid image")],
)
def test_unsupported_sources(emu: Emulator, post: Post, name: str, needle: str) -> None:
    response = post(name)
    assert response.status_code == 400
    message = response.json()["message"]
    assert needle in message
    if name != "corrupt.jpg":
        assert "JPEG and PNG" in message
    assert emu.stats.credits_charged == 0


def test_source_over_20_mb_by_declared_length(emu: Emulator, post: Post) -> None:
    assert sample_info("too-large.png").content_type == "image/png"
    response = post("too-large.png")
    assert response.status_code == 400
    assert "too large" in response.json()["message"]


def test_source_over_the_limit_while_streaming(client: httpx.Client) -> None:
    # Chunked samples carry no Content-Length: only counting bytes can catch them.
    with Emulator(max_source_bytes=2_000) as emu:
        url = emu.image_url("mug-plain.jpg") + "?chunked=1"
        assert "content-length" not in client.get(url).headers
        headers = {"x-freepik-api-key": emu.api_key}
        response = client.post(emu.api_url, data={"image_url": url}, headers=headers)
    assert response.status_code == 400
    assert "too large" in response.json()["message"]


def test_form_body_too_large(emu: Emulator, client: httpx.Client) -> None:
    headers = {"x-freepik-api-key": emu.api_key}
    response = client.post(emu.api_url, data={"image_url": "x" * 100_000}, headers=headers)
    assert response.status_code == 413


def test_wrong_method_and_unknown_path(emu: Emulator, client: httpx.Client) -> None:
    response = client.get(emu.api_url)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert client.get(emu.url_for("/nope")).json() == {"message": "Not found"}


def test_fast_mode_skips_self_fetch_but_still_validates(client: httpx.Client) -> None:
    with Emulator(fast=True) as emu:
        headers = {"x-freepik-api-key": emu.api_key}

        def post(name: str) -> httpx.Response:
            data = {"image_url": emu.image_url(name)}
            return client.post(emu.api_url, data=data, headers=headers)

        first, second = post("mug-plain.jpg").json(), post("mug-plain.jpg").json()
        assert (
            client.get(first["high_resolution"]).content
            == client.get(second["high_resolution"]).content
        )
        assert post("animated.gif").status_code == 400
        assert "too large" in post("too-large.png").json()["message"]
        assert post("ball-small.png").status_code == 200
        stats = emu.stats
    assert stats.count("sample") == 0  # no HTTP round trip to its own samples
    assert stats.credits_charged == 3


def test_samples_listing_and_serving(emu: Emulator, client: httpx.Client) -> None:
    listing = client.get(emu.url_for("/samples")).json()
    names = [item["name"] for item in listing]
    assert "mug-plain.jpg" in names
    assert all(item["url"] == emu.image_url(item["name"]) for item in listing)
    html = client.get(emu.image_url("page.html"))
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    gif = client.get(emu.image_url("animated.gif"))
    assert gif.content.startswith(b"GIF8")
    assert client.get(emu.url_for("/samples/unknown.png")).status_code == 404
    with pytest.raises(KeyError):
        emu.image_url("unknown.png")
