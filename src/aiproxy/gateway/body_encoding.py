"""Compressed request bodies (`Content-Encoding: zstd | gzip | deflate`), decoded in bounded steps.

Clients may compress what they send (Codex can send zstd). The compressed body is read like a
plain one (refused past `asgi.MAX_BODY`), then decompressed a bounded piece at a time and refused
the moment its plain size passes the same bound, so a small "zip bomb" never makes the relay
allocate more than that.
Everything after this step sees the plain body: the upstream gets it uncompressed (no
`content-encoding` is ever forwarded), and usage, limits and the request log treat it as if
it had come plain. A request without a `Content-Encoding` never reaches this module.
"""

from __future__ import annotations

import zlib
from typing import Protocol

import zstandard

from .asgi import MAX_BODY, BodyTooLarge, Receive, read_body
from .errors import GatewayError

SUPPORTED = ("zstd", "gzip", "deflate")
_OUTPUT_STEP = 256 * 1024  # at most this much plain output is produced per step of a zlib decoder


class BodyEncodingUnsupported(Exception):
    """A `Content-Encoding` the relay cannot decode (the client gets 415)."""


class BodyCorrupt(Exception):
    """The body does not decode with the encoding it names (the client gets 400)."""


class _Decoder(Protocol):
    def feed(self, data: bytes) -> None: ...

    def finish(self) -> None: ...


class _Sink:
    """Collects plain output and refuses it past the bound, before the next piece is kept."""

    __slots__ = ("chunks", "size")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > MAX_BODY:
            raise BodyTooLarge
        self.chunks.append(bytes(data))
        return len(data)


class _ZstdDecoder:
    """zstd through a stream writer: it hands the sink one bounded piece at a time."""

    __slots__ = ("_sink", "_writer")

    def __init__(self, sink: _Sink) -> None:
        self._sink = sink
        self._writer = zstandard.ZstdDecompressor().stream_writer(
            sink, write_size=_OUTPUT_STEP, write_return_read=True, closefd=False
        )

    def feed(self, data: bytes) -> None:
        try:
            self._writer.write(data)
        except zstandard.ZstdError as exc:
            raise BodyCorrupt(f"zstd: {exc}") from None

    def finish(self) -> None:
        # The writer does not say whether the last frame was whole; a body cut short leaves a
        # prefix of JSON, which the JSON parse refuses next. Nothing at all is corrupt here.
        if not self._sink.size:
            raise BodyCorrupt("zstd: the stream ended before any data")


class _ZlibDecoder:
    """gzip and deflate (zlib-wrapped, or raw as some clients send it), with bounded output steps."""

    __slots__ = ("_decoder", "_gzip", "_head", "_sink")

    def __init__(self, sink: _Sink, *, gzip: bool) -> None:
        self._sink = sink
        self._head = b""
        self._gzip = gzip
        self._decoder: zlib._Decompress | None = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None

    def feed(self, data: bytes) -> None:
        if self._decoder is None:  # deflate: the first two bytes tell a zlib header from a raw stream
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return
            zlib_header = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._decoder = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        while data:
            decoder = self._decoder
            if decoder.eof:  # gzip allows several members back to back
                if not self._gzip:
                    raise BodyCorrupt("deflate: data after the end of the stream")
                decoder = self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                out = decoder.decompress(data, _OUTPUT_STEP)
            except zlib.error as exc:
                raise BodyCorrupt(f"{'gzip' if self._gzip else 'deflate'}: {exc}") from None
            if out:
                self._sink.write(out)
            data = decoder.unconsumed_tail or decoder.unused_data

    def finish(self) -> None:
        if self._decoder is None or not self._decoder.eof:
            raise BodyCorrupt(f"{'gzip' if self._gzip else 'deflate'}: the stream ended early")


def _decoder_for(encoding: str, sink: _Sink) -> _Decoder:
    if encoding == "zstd":
        return _ZstdDecoder(sink)
    if encoding in ("gzip", "x-gzip"):
        return _ZlibDecoder(sink, gzip=True)
    if encoding == "deflate":
        return _ZlibDecoder(sink, gzip=False)
    raise BodyEncodingUnsupported(
        f"unsupported Content-Encoding {encoding!r}: send the body plain or as {', '.join(SUPPORTED)}"
    )


def content_coding(header: bytes) -> str | None:
    """The one coding to undo; None for `identity`. Raises `BodyEncodingUnsupported` for a stack."""
    codings = [c.strip().lower() for c in header.decode("latin-1").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return None
    if len(codings) > 1:
        raise BodyEncodingUnsupported("only one Content-Encoding may be applied to a request body")
    return codings[0]


async def read_decoded_body(receive: Receive, header: bytes) -> bytes:
    """The plain body of a request sent with `Content-Encoding: <header>`.

    The compressed body is read whole first (bounded like a plain one), then decoded in bounded
    steps. Raises `BodyEncodingUnsupported` (415, before the body is read), `BodyCorrupt` (400) or
    `BodyTooLarge` (413) when the compressed or the plain size passes `MAX_BODY`."""
    coding = content_coding(header)
    sink = _Sink()
    decoder = _decoder_for(coding, sink) if coding else None
    compressed = await read_body(receive)
    if decoder is None or not compressed:
        return compressed
    decoder.feed(compressed)
    decoder.finish()
    return b"".join(sink.chunks)


async def read_request_body(receive: Receive, encoding: bytes | None) -> bytes:
    """A proxy request's plain body, or the client's 413 / 415 / 400 (`GatewayError`)."""
    try:
        if encoding is None:  # the common case: read as it always was, nothing more
            return await read_body(receive)
        return await read_decoded_body(receive, encoding)
    except BodyTooLarge:
        raise GatewayError(413, "request body too large") from None
    except BodyEncodingUnsupported as exc:
        raise GatewayError(415, str(exc)) from None
    except BodyCorrupt as exc:
        raise GatewayError(400, f"request body could not be decompressed: {exc}") from None
