"""Compressed request bodies, as vendors accept them: ``Content-Encoding: zstd``, ``gzip``, ``deflate``.

The relay always sends plain bodies; the fake decodes these anyway (the aiohttp server's own
decoding is off: it lacks zstd here), so a test can tell a compressed body that slipped through
from a plain one by the recorded ``content-encoding`` header. A body that does not decode is
recorded as unreadable (the vendor's 400).
"""

from __future__ import annotations

import zlib

import zstandard


def decoded_body(encoding: str, raw: bytes) -> bytes:
    """The plain body; b"\\x00" (never valid JSON) when it does not decode."""
    coding = encoding.strip().lower()
    if not raw or coding in ("", "identity"):
        return raw
    try:
        if coding == "zstd":
            return zstandard.ZstdDecompressor().decompressobj().decompress(raw)
        if coding in ("gzip", "x-gzip"):
            return zlib.decompress(raw, 16 + zlib.MAX_WBITS)
        if coding == "deflate":
            return zlib.decompress(raw)
    except (zstandard.ZstdError, zlib.error):
        return b"\x00"
    return b"\x00"
