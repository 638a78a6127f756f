"""A tiny incremental Server-Sent Events parser for the stream converters.

Upstream bytes arrive in arbitrary pieces; ``feed`` keeps the unfinished tail in a bytearray and returns
only complete events (an event ends at a blank line). Lines may end in ``\\n``, ``\\r\\n`` or ``\\r``, and a
chunk may end anywhere, including between ``\\r`` and ``\\n``.
"""

from __future__ import annotations

SSEEvent = tuple[str | None, bytes]

_BLANK_LINE = b"\n\n"


class SSEParser:
    """Turn a byte stream into ``(event name or None, data)`` tuples.

    ``data`` joins the event's ``data:`` lines with ``\\n`` as the SSE spec says. Comment lines (``:``),
    ``id:`` and ``retry:`` are skipped; a block without any ``data:`` line is not an event (spec).
    """

    __slots__ = ("_buf", "_cr")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._cr = False  # the previous chunk ended in CR: a LF starting the next one belongs to it

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        if self._cr or b"\r" in chunk:
            chunk = self._normalise(chunk)
        buf = self._buf
        # Only the new bytes (and the last old one) can complete a blank line: keeps a large event that
        # arrives in many small chunks linear instead of rescanning the whole tail every time.
        start = len(buf) - 1 if buf else 0
        buf += chunk
        end = buf.rfind(_BLANK_LINE, start)
        if end < 0:
            return []
        # Everything up to the last blank line is complete: parse it in one go and keep the rest.
        complete = bytes(buf[:end])
        del buf[: end + 2]
        return _parse_blocks(complete)

    def flush(self) -> list[SSEEvent]:
        """Parse what is left as a final event: some servers end the stream without the blank line."""
        rest = bytes(self._buf).strip(b"\n")
        self._buf.clear()
        self._cr = False
        return _parse_blocks(rest) if rest else []

    def _normalise(self, chunk: bytes) -> bytes:
        # CRLF, CR and LF all end a line (SSE spec); everything downstream only looks for LF.
        if self._cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._cr = chunk[-1:] == b"\r"
        return chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def _parse_blocks(text: bytes) -> list[SSEEvent]:
    return [ev for block in text.split(_BLANK_LINE) if (ev := _parse_block(block)) is not None]


def _parse_block(block: bytes) -> SSEEvent | None:
    # Fast path: the usual OpenAI/Gemini frame is a single "data: ..." line.
    if block.startswith(b"data: ") and b"\n" not in block:
        return None, block[6:]
    event: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line[0] == 0x3A:  # empty (leading newlines) or ":" comment
            continue
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    if not data:
        return None
    return event, data[0] if len(data) == 1 else b"\n".join(data)


class DataRewriter:
    """A stream filter that re-emits every complete event as one `data:` event after `rewrite`.

    Subclasses decide per event: new data, or None to drop the event. `finish` emits an event
    the upstream did not end with a blank line."""

    __slots__ = ("parser",)

    def __init__(self) -> None:
        self.parser = SSEParser()

    def rewrite(self, event: str | None, data: bytes) -> bytes | None:
        return data

    def feed(self, chunk: bytes) -> bytes:
        return self._emit(self.parser.feed(chunk))

    def finish(self) -> bytes:
        return self._emit(self.parser.flush())

    def _emit(self, events: list[SSEEvent]) -> bytes:
        out = []
        for event, data in events:
            new = self.rewrite(event, data)
            if new is not None:
                out.append(b"data: " + new + b"\n\n")
        return b"".join(out)
