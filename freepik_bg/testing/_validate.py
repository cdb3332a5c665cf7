"""Request validation for the API: the API key, the form body and its ``image_url``."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from freepik_bg.testing._config import EmulatorConfig
from freepik_bg.testing._exchange import Exchange, Reject

__all__ = ["authenticate", "read_image_url"]

_FORM = "application/x-www-form-urlencoded"
_MAX_FORM_BYTES = 64 * 1024
_MAX_URL_LENGTH = 2048


def authenticate(headers: Mapping[str, str], cfg: EmulatorConfig) -> str:
    """The API key of a request, or Reject (401) when it is missing or unknown."""
    key = headers.get("x-freepik-api-key")
    if not key:
        raise Reject(401, {"message": "Missing API key"})
    if key not in cfg.api_keys:
        raise Reject(401, {"message": "Invalid API key"})
    return key


async def read_image_url(ex: Exchange, cfg: EmulatorConfig) -> str:
    """The ``image_url`` of the form body, validated as the service does, or Reject."""
    content_type = ex.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != _FORM:
        raise Reject(
            415,
            {"message": f"Unsupported Media Type: send the body as {_FORM}"},
        )
    body = await ex.read_body(_MAX_FORM_BYTES)
    if body is None:
        raise Reject(413, {"message": "Request body too large"}, (("connection", "close"),))
    try:
        form = urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise Reject(400, {"message": "The request body is not valid form data"}) from None
    values = form.get("image_url")
    if not values or not values[0].strip():
        raise _invalid(cfg, "image_url is required")
    image_url = values[0].strip()
    if len(image_url) > _MAX_URL_LENGTH:
        raise _invalid(cfg, f"image_url must be at most {_MAX_URL_LENGTH} characters")
    try:
        parts = urllib.parse.urlsplit(image_url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise _invalid(cfg, "image_url must be an absolute http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _invalid(cfg, "image_url must be an absolute http(s) URL")
    return image_url


def _invalid(cfg: EmulatorConfig, reason: str) -> Reject:
    message = "Your request has invalid parameters"
    params = [{"name": "image_url", "reason": reason}]
    if cfg.invalid_params_style == "problem":
        payload: dict[str, Any] = {
            "message": message,
            "problem": {"message": message, "invalid_params": params},
        }
    else:
        payload = {"message": message, "invalid_params": params}
    return Reject(400, payload)
