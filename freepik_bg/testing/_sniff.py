"""Format sniffing: what a source really is, from its first bytes."""

from __future__ import annotations

__all__ = ["sniff_format"]


def sniff_format(data: bytes) -> str:
    """The format of ``data`` from its magic bytes: "jpeg", "png", "gif", "html"...

    The service decides by content, never by file name or Content-Type.
    """
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"BM":
        return "bmp"
    if data[4:8] == b"ftyp":
        return "heif/avif"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    head = data[:1024].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return "html"
    if head.startswith((b"<?xml", b"<svg")):
        return "svg/xml"
    return "unknown"
