"""An explicit API key for Dask workers that never enters the task graph.

The graph holds a `KeyRef`: a random name, nothing else, so neither the
dashboard, nor a pickled graph, nor a task's repr can show the key. The key
itself is kept in the calling process and, when a ``distributed.Client`` is
current, handed to every worker (present and future) by a worker plugin over
Dask's own connections, which carry it the way they carry any data (encrypted
when the cluster uses TLS). With no explicit key, workers read
``$FREEPIK_API_KEY`` from their own environment.
"""

from __future__ import annotations

import secrets
import threading
from typing import Any

import attrs
from distributed import WorkerPlugin, default_client

from ._config import API_KEY_ENV, resolve_api_key
from ._errors import ConfigurationError

__all__ = ["KeyRef", "share_key"]

_keys: dict[str, str] = {}
_keys_lock = threading.Lock()


def _remember(name: str, key: str) -> None:
    with _keys_lock:
        _keys[name] = key


@attrs.frozen(slots=True)
class KeyRef:
    """Stands for an API key in a task graph: a name to look the key up by on the worker.

    Examples:
        >>> KeyRef("k-0123")
        KeyRef(name='k-0123')
    """

    name: str

    def resolve(self) -> str:
        """The key this stands for, on this process; a clear error when it is not here."""
        with _keys_lock:
            key = _keys.get(self.name)
        if key is None:
            raise ConfigurationError(
                "the api_key given to freepik_bg.dask.remove_backgrounds is not known on this "
                "worker: call remove_backgrounds while the distributed.Client that computes it "
                f"is current (it hands the key to the workers), or set {API_KEY_ENV} on the "
                "workers and pass no api_key."
            )
        return key


class _KeyPlugin(WorkerPlugin):
    """Puts the key into each worker's registry; its repr does not show it."""

    idempotent = True

    def __init__(self, name: str, key: str) -> None:
        self._name = name
        self._key = key

    def __repr__(self) -> str:
        return f"<freepik_bg key plugin {self._name}>"

    def setup(self, worker: Any) -> None:
        _remember(self._name, self._key)


def _current_client() -> Any:
    try:
        return default_client()
    except ValueError:  # no client: the local scheduler, in this process
        return None


def share_key(api_key: str | None) -> KeyRef | None:
    """A `KeyRef` for ``api_key``, known here and on the current client's workers."""
    if api_key is None:
        return None
    key = resolve_api_key(api_key)  # a malformed key fails here, before anything runs
    name = f"freepik-bg-key-{secrets.token_hex(8)}"
    _remember(name, key)
    client = _current_client()
    if client is not None:
        client.register_plugin(_KeyPlugin(name, key), name=name)
    return KeyRef(name)
