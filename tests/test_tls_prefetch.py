"""The CLI builds its client's TLS context in a thread while it loads the SDK (#15).

`freepik_bg._tls_prefetch` must give the client exactly the context httpx would have
built (certifi's bundle, or what ``$SSL_CERT_FILE`` names), or leave httpx to raise its
own error where it always did; and only a run that makes an httpx client starts it.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import certifi
import httpx
import pytest

from freepik_bg import _cli, _client
from freepik_bg._tls_prefetch import TLSPrefetch
from freepik_bg.testing import Emulator
from tests.conftest import KEY


def test_the_prefetched_context_is_the_one_httpx_builds() -> None:
    context = TLSPrefetch.start().verify()
    assert isinstance(context, ssl.SSLContext)
    expected = httpx.create_ssl_context()
    assert context.cert_store_stats() == expected.cert_store_stats()
    assert context.cert_store_stats()["x509_ca"] > 50  # certifi's bundle
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert context.minimum_version == expected.minimum_version
    assert context.options == expected.options


def test_it_trusts_ssl_cert_file_as_httpx_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = Path(certifi.where()).read_text(encoding="ascii")
    end = "-----END CERTIFICATE-----\n"
    one = tmp_path / "one-ca.pem"
    one.write_text(bundle[bundle.index("-----BEGIN CERTIFICATE-----") : bundle.index(end)] + end)
    monkeypatch.setenv("SSL_CERT_FILE", str(one))
    context = TLSPrefetch.start().verify()
    assert isinstance(context, ssl.SSLContext)
    assert context.cert_store_stats()["x509_ca"] == 1


def test_a_context_that_cannot_be_built_leaves_httpx_to_raise_its_own_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    verify = TLSPrefetch.start().verify()
    assert verify is True
    with pytest.raises(FileNotFoundError):  # where and as it always was
        httpx.AsyncClient(verify=verify)


def _record_clients(monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], list[TLSPrefetch]]:
    verifies: list[Any] = []
    started: list[TLSPrefetch] = []
    real_make, real_start = _client.make_http_client, TLSPrefetch.start

    def make_http_client(**options: Any) -> httpx.AsyncClient:
        verifies.append(options["verify"])
        return real_make(**options)

    def start() -> TLSPrefetch:
        started.append(real_start())
        return started[-1]

    monkeypatch.setattr(_client, "make_http_client", make_http_client)
    monkeypatch.setattr(TLSPrefetch, "start", staticmethod(start))
    monkeypatch.setenv("FREEPIK_API_KEY", KEY)
    return verifies, started


def test_the_run_s_client_gets_the_prefetched_context(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifies, started = _record_clients(monkeypatch)
    listing = tmp_path / "urls.txt"
    listing.write_text(emu.image_url("ball-small.png") + "\n")
    args = ["remove", str(listing), "-o", str(tmp_path / "out"), "--base-url", emu.base_url]
    assert _cli.main([*args, "--progress", "none"]) == 0
    assert len(started) == 1
    assert verifies == [started[0].verify()]
    assert isinstance(verifies[0], ssl.SSLContext)
    assert len(list((tmp_path / "out").glob("*.png"))) == 1  # the run itself went as ever


@pytest.mark.parametrize("extra", [["--dry-run"], ["--http-backend", "aiohttp"]])
def test_no_prefetch_where_no_httpx_client_is_made(
    extra: list[str], emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("aiohttp")
    verifies, started = _record_clients(monkeypatch)
    listing = tmp_path / "urls.txt"
    listing.write_text(emu.image_url("ball-small.png") + "\n")
    args = ["remove", str(listing), "-o", str(tmp_path / "out"), "--base-url", emu.base_url]
    assert _cli.main([*args, "--progress", "none", *extra]) == 0
    assert started == []
    assert verifies == ([] if extra == ["--dry-run"] else [True])
