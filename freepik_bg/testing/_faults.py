"""Fault injection: what can go wrong on the wire, scripted or at random."""

from __future__ import annotations

import collections
import enum
import random
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

__all__ = ["Endpoint", "Fault", "FaultKind", "FaultRule"]

#: Where a fault applies: the remove-background POST, or any GET of a returned link.
Endpoint = Literal["post", "download"]
ENDPOINTS: tuple[Endpoint, ...] = ("post", "download")

_DEFAULT_MESSAGES = {
    400: "Bad Request",
    401: "Invalid API key",
    403: "Forbidden",
    404: "Not found",
    408: "Request Timeout",
    429: "Rate limit exceeded",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class FaultKind(str, enum.Enum):
    """The kinds of fault the emulator can inject.

    See [`Fault`][freepik_bg.testing.Fault] for what each does on the wire.
    """

    #: An error status with a JSON ``{"message": ...}`` body (500, 502, 503, 504, 429...).
    STATUS = "status"
    #: The TCP connection is reset (RST) without any response.
    RESET = "reset"
    #: Headers are sent, then no body byte for ``seconds``, then the body.
    STALL = "stall"
    #: The body is sent ``chunk_size`` bytes at a time, ``seconds`` apart.
    TRICKLE = "trickle"
    #: Content-Length is right but only ``fraction`` of the body is sent, then the
    #: connection is closed.
    TRUNCATE = "truncate"
    #: Downloads only: 200 with an HTML page as the body, labelled ``image/png``.
    NOT_PNG = "not_png"
    #: POST only: 200 with a body that is not valid JSON.
    MALFORMED_JSON = "malformed_json"
    #: POST only: 200 with valid JSON that lacks some of the four link fields.
    MISSING_FIELDS = "missing_fields"
    #: Content-Length claims ``content_length`` bytes (10 GiB by default); the real body
    #: is sent and the connection closed.
    HUGE_CONTENT_LENGTH = "huge_content_length"
    #: A redirect (``status``, 307 by default) to the same URL, or to ``location``.
    REDIRECT = "redirect"
    #: A redirect to an emulator URL that redirects forever.
    REDIRECT_LOOP = "redirect_loop"


# Kinds that replace the response before any work is done, whatever their phase.
_REPLACING = {FaultKind.STATUS, FaultKind.RESET, FaultKind.REDIRECT, FaultKind.REDIRECT_LOOP}
_ONLY = {
    FaultKind.NOT_PNG: "download",
    FaultKind.MALFORMED_JSON: "post",
    FaultKind.MISSING_FIELDS: "post",
}
_LINK_FIELDS = ("original", "high_resolution", "preview", "url")


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _status_default_after(status: int) -> bool:
    # A gateway answers 429 and 503 before the request reaches the workers, so nothing
    # is processed or billed; 500, 502 and 504 typically come after the work was done.
    return status not in (429, 503)


@attrs.frozen
class Fault:
    """One injected failure. Build it with the class methods, not the constructor.

    ``after_processing`` matters for POSTs only, and models billing: when True the
    emulator first does the real work (fetch, cutout) and charges a credit, then fails;
    when False it fails before doing anything and charges nothing. For downloads every
    fault simply replaces or distorts the response.

    Examples:
        ```python
        emu.inject("post", Fault.http_error(503), Fault.reset(after_processing=True))
        emu.inject("download", Fault.truncate(0.5))
        ```
    """

    kind: FaultKind = attrs.field(converter=FaultKind)
    status: int | None = None
    message: str | None = None
    retry_after: int | None = None
    seconds: float = 0.0
    chunk_size: int = 1024
    fraction: float = attrs.field(default=0.5)
    content_length: int = 10 * 1024**3
    location: str | None = None
    fields: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    after_processing: bool = False

    @fraction.validator
    def _check_fraction(self, _attribute: object, value: float) -> None:
        if not 0.0 <= value < 1.0:
            raise ValueError("fraction must be in [0, 1)")

    @classmethod
    def http_error(
        cls,
        status: int = 500,
        *,
        message: str | None = None,
        retry_after: int | None = None,
        after_processing: bool | None = None,
    ) -> Fault:
        """Answer ``status`` with ``{"message": message}`` (a standard text by default).

        429 and 503 default to before processing (not charged); other codes to after
        (charged). A 429 carries ``Retry-After: retry_after`` (1 by default) unless the
        emulator's ``retry_after_header`` knob is off.
        """
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error code")
        after = _status_default_after(status) if after_processing is None else after_processing
        return cls(
            FaultKind.STATUS,
            status=status,
            message=message,
            retry_after=retry_after,
            after_processing=after,
        )

    @classmethod
    def reset(cls, *, after_processing: bool = False) -> Fault:
        """Reset the connection (TCP RST) without sending a response.

        Clients see ``httpx.ReadError`` or ``httpx.RemoteProtocolError``.
        """
        return cls(FaultKind.RESET, after_processing=after_processing)

    @classmethod
    def stall(cls, seconds: float) -> Fault:
        """Send the status and headers, then nothing for ``seconds``, then the body."""
        return cls(FaultKind.STALL, seconds=seconds, after_processing=True)

    @classmethod
    def trickle(cls, chunk_size: int = 1024, interval: float = 0.05) -> Fault:
        """Send the body ``chunk_size`` bytes at a time with ``interval`` seconds between."""
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        return cls(
            FaultKind.TRICKLE, chunk_size=chunk_size, seconds=interval, after_processing=True
        )

    @classmethod
    def truncate(cls, fraction: float = 0.5) -> Fault:
        """Declare the full Content-Length, send only ``fraction`` of the body, close."""
        return cls(FaultKind.TRUNCATE, fraction=fraction, after_processing=True)

    @classmethod
    def not_png(cls) -> Fault:
        """Downloads: 200 ``image/png`` whose body is an HTML page."""
        return cls(FaultKind.NOT_PNG, after_processing=True)

    @classmethod
    def malformed_json(cls) -> Fault:
        """POST: 200 ``application/json`` whose body is cut-off JSON (charged)."""
        return cls(FaultKind.MALFORMED_JSON, after_processing=True)

    @classmethod
    def missing_fields(cls, *fields: str) -> Fault:
        """POST: 200 JSON without ``fields`` (``high_resolution`` and ``url`` by default)."""
        dropped = fields or ("high_resolution", "url")
        unknown = set(dropped) - set(_LINK_FIELDS)
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}; known: {_LINK_FIELDS}")
        return cls(FaultKind.MISSING_FIELDS, fields=dropped, after_processing=True)

    @classmethod
    def huge_content_length(cls, content_length: int = 10 * 1024**3) -> Fault:
        """Declare ``content_length`` bytes, send the real body, then close."""
        return cls(
            FaultKind.HUGE_CONTENT_LENGTH, content_length=content_length, after_processing=True
        )

    @classmethod
    def redirect(cls, location: str | None = None, *, status: int = 307) -> Fault:
        """Redirect to ``location`` (an absolute URL), or to the same URL when None.

        A same-URL redirect is followed by a fresh request that draws its own fault
        (usually none), so it succeeds. 307 keeps a POST a POST.
        """
        if status not in (301, 302, 303, 307, 308):
            raise ValueError("status must be a redirect code")
        return cls(FaultKind.REDIRECT, status=status, location=location)

    @classmethod
    def redirect_loop(cls, *, status: int = 307) -> Fault:
        """Redirect into ``/_emulator/redirect-loop/<n>``, which redirects forever."""
        if status not in (301, 302, 303, 307, 308):
            raise ValueError("status must be a redirect code")
        return cls(FaultKind.REDIRECT_LOOP, status=status)

    @property
    def replaces_response(self) -> bool:
        """True for faults that answer instead of the normal response."""
        return self.kind in _REPLACING

    @property
    def default_message(self) -> str:
        """The JSON message a STATUS fault sends."""
        if self.message is not None:
            return self.message
        return _DEFAULT_MESSAGES.get(self.status or 500, "Error")

    def applies_to(self, endpoint: Endpoint) -> bool:
        """Whether this fault makes sense on ``endpoint``."""
        only = _ONLY.get(self.kind)
        return only is None or only == endpoint

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; [`from_json`][freepik_bg.testing.Fault.from_json] reverses it."""
        data = attrs.asdict(self, recurse=False)
        data["kind"] = self.kind.value
        data["fields"] = list(self.fields)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        """Rebuild a fault from [`to_json`][freepik_bg.testing.Fault.to_json] output."""
        return cls(**dict(data))


@attrs.frozen
class FaultRule:
    """Inject ``fault`` on ``endpoint`` with ``probability`` per request.

    Examples:
        ```python
        Emulator(fault_rules=[FaultRule("post", Fault.http_error(503), 0.1)], seed=42)
        ```
    """

    endpoint: Endpoint = attrs.field()
    fault: Fault
    probability: float = attrs.field()

    @endpoint.validator
    def _check_endpoint(self, _attribute: object, value: str) -> None:
        if value not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}")
        if not self.fault.applies_to(value):
            raise ValueError(f"{self.fault.kind.value} faults do not apply to {value}")

    @probability.validator
    def _check_probability(self, _attribute: object, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise ValueError("probability must be in [0, 1]")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "endpoint": self.endpoint,
            "fault": self.fault.to_json(),
            "probability": self.probability,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultRule:
        """Rebuild a rule from [`to_json`][freepik_bg.testing.FaultRule.to_json] output."""
        return cls(data["endpoint"], Fault.from_json(data["fault"]), float(data["probability"]))


def check_rules(rules: Sequence[FaultRule]) -> None:
    """Reject rule sets whose probabilities add up to more than 1 on an endpoint."""
    for endpoint in ENDPOINTS:
        total = sum(r.probability for r in rules if r.endpoint == endpoint)
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault probabilities on {endpoint} add up to {total} > 1")


class FaultBook:
    """Scripted fault queues plus the seeded random source, shared by all requests."""

    def __init__(self, seed: int | None) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, collections.deque[Fault]] = {
            e: collections.deque() for e in ENDPOINTS
        }
        # Seeded for reproducible tests; nothing here is security-sensitive.
        self.random = random.Random(seed)  # noqa: S311

    def push(self, endpoint: Endpoint, faults: Iterable[Fault]) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}")
        items = list(faults)
        for fault in items:
            if not fault.applies_to(endpoint):
                raise ValueError(f"{fault.kind.value} faults do not apply to {endpoint}")
        with self._lock:
            self._queues[endpoint].extend(items)

    def clear(self) -> None:
        with self._lock:
            for queue in self._queues.values():
                queue.clear()

    def pending(self, endpoint: Endpoint) -> tuple[Fault, ...]:
        with self._lock:
            return tuple(self._queues[endpoint])

    def draw(self, endpoint: Endpoint, rules: Sequence[FaultRule]) -> Fault | None:
        """The scripted fault next in line, else a random one from ``rules``, else None."""
        with self._lock:
            queue = self._queues[endpoint]
            if queue:
                return queue.popleft()
            matching = [r for r in rules if r.endpoint == endpoint]
            if not matching:
                return None
            roll = self.random.random()
        for rule in matching:
            if roll < rule.probability:
                return rule.fault
            roll -= rule.probability
        return None

    def uniform(self, low: float, high: float) -> float:
        with self._lock:
            return low if high <= low else self.random.uniform(low, high)
