"""TLS: the emulator's ASGI app served over HTTPS on 127.0.0.1 with trustme certificates."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

import freepik_bg
from freepik_bg.testing import EmulatorApp, EmulatorConfig

from ._servers import ThreadedUvicorn
from .conftest import HTTP_BACKENDS, KEY, TRANSPORTS

pytestmark = pytest.mark.anyio

SAMPLE = "ball-small.png"


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def serve_https(tmp_path: Path, ca: trustme.CA, hostname: str) -> ThreadedUvicorn:
    cert = ca.issue_cert(hostname)
    certfile, keyfile = tmp_path / f"{hostname}.crt", tmp_path / f"{hostname}.key"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    app = EmulatorApp(EmulatorConfig(api_keys=(KEY,), fast=True))
    return ThreadedUvicorn(app, certfile=str(certfile), keyfile=str(keyfile))


@pytest.fixture
def https_port(tmp_path: Path, ca: trustme.CA) -> Iterator[int]:
    with serve_https(tmp_path, ca, "127.0.0.1") as server:
        yield server.port


@TRANSPORTS
async def test_untrusted_certificate_is_a_clear_error(https_port: int, http_backend: str) -> None:
    """The message names the certificate failure, on trio too.

    Regression test: under trio, httpx raises ``ConnectError('')`` caused by a
    bare ``trio.BrokenResourceError``, the certificate error further down the
    chain; the SDK's message used to end in an unhelpful "ConnectError".
    """
    base = f"https://127.0.0.1:{https_port}"
    async with freepik_bg.AsyncClient(
        KEY, base_url=base, max_retries=1, http_backend=http_backend
    ) as client:
        with pytest.raises(freepik_bg.APIConnectionError) as caught:
            await client.remove_background(f"{base}/samples/{SAMPLE}")
    message = str(caught.value)
    assert "certificate verify failed" in message, message
    assert caught.value.maybe_processed is False  # nothing reached the service
    assert caught.value.attempts == 2  # a connect error is safe to retry, then given up
    assert KEY not in message


@TRANSPORTS
async def test_certificate_trusted_through_configuration_works(
    https_port: int, ca: trustme.CA, tmp_path: Path, http_backend: str
) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    base = f"https://127.0.0.1:{https_port}"
    async with freepik_bg.AsyncClient(
        KEY, base_url=base, verify=context, http_backend=http_backend
    ) as client:
        cutout = await client.remove_background(f"{base}/samples/{SAMPLE}")
        assert cutout.high_resolution.startswith(base)
        path = await client.download_to(cutout, tmp_path / "out.png")
    assert path.read_bytes().startswith(b"\x89PNG")


@HTTP_BACKENDS
async def test_certificate_for_another_name_is_refused(
    tmp_path: Path, ca: trustme.CA, http_backend: str
) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with serve_https(tmp_path, ca, "other.example") as server:
        base = f"https://127.0.0.1:{server.port}"
        async with freepik_bg.AsyncClient(
            KEY, base_url=base, verify=context, max_retries=0, http_backend=http_backend
        ) as client:
            with pytest.raises(freepik_bg.APIConnectionError) as caught:
                await client.remove_background(f"{base}/samples/{SAMPLE}")
    assert "certificate verify failed" in str(caught.value)
    assert "mismatch" in str(caught.value).lower()
