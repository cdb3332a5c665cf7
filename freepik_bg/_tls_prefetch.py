"""The CLI's TLS trust store, loaded in a thread while the rest of the SDK is imported.

httpx builds an `ssl.SSLContext` for every client it creates, and loading certifi's CA
bundle into it is ~25 ms of the time to the first POST. OpenSSL parses the bundle with
Python's lock released, so a thread can do it while ``freepik-bg remove`` imports its
own modules: on a machine with a second core, the load costs no time before the POST.
The context is the one httpx would build itself (`httpx.create_ssl_context` with its
defaults: certifi's bundle, or ``$SSL_CERT_FILE``/``$SSL_CERT_DIR``); if building it
fails, the client is given ``True`` and httpx raises the same error where it always did.
"""

from __future__ import annotations

import ssl
import threading
from typing import Any

import httpx

__all__ = ["TLSPrefetch"]


class TLSPrefetch:
    """A default `ssl.SSLContext` being built in a daemon thread; `verify` waits for it.

    Examples:
        >>> tls = TLSPrefetch.start()  # doctest: +SKIP
        >>> client = AsyncClient(verify=tls.verify())  # doctest: +SKIP
    """

    __slots__ = ("_context", "_thread")

    def __init__(self) -> None:
        self._context: ssl.SSLContext | None = None
        # A daemon: a run that stops on a usage error does not wait for the bundle.
        self._thread = threading.Thread(target=self._build, name="tls-prefetch", daemon=True)

    @classmethod
    def start(cls) -> TLSPrefetch:
        """Start building the context now."""
        prefetch = cls()
        prefetch._thread.start()
        return prefetch

    def _build(self) -> None:
        try:
            self._context = httpx.create_ssl_context()
        except Exception:  # httpx raises it again, in the caller's thread, when given True
            self._context = None

    def verify(self) -> Any:
        """The context, once built (waits for the thread); ``True`` if it could not be."""
        self._thread.join()
        return True if self._context is None else self._context
