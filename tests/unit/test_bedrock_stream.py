"""Bedrock's event stream decoded to Anthropic SSE: frames split or packed, exceptions, garbage.

The frames come from the fake upstream's own encoder (CRC32 prelude and message checksums); the
decoder reads them with botocore's parser, so the two sides are independent implementations.
"""

from __future__ import annotations

import orjson

from aiproxy.gateway.convert.sse import SSEParser
from aiproxy.gateway.errors import CLAUDE
from aiproxy.gateway.providers.bedrock import EventStreamDecoder
from aiproxy.gateway.usage import StreamTap
from aiproxy.mock_upstream.bedrock import chunk_frame, exception_frame, frame

EVENTS = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "content": [],
            "usage": {"input_tokens": 25, "output_tokens": 1},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello "}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "wörld\n✓"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}},
    {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 25}},
]
STREAM = b"".join(chunk_frame(event) for event in EVENTS)


def parsed(sse: bytes) -> list[tuple[str | None, dict[str, object]]]:
    return [(event, orjson.loads(data)) for event, data in SSEParser().feed(sse)]


def decode(pieces: list[bytes]) -> bytes:
    decoder = EventStreamDecoder()
    out = b"".join(decoder.feed(piece) for piece in pieces)
    return out + decoder.finish()


def test_whole_stream_becomes_anthropic_sse() -> None:
    sse = decode([STREAM])
    assert parsed(sse) == [(event["type"], event) for event in EVENTS]
    tap = StreamTap(CLAUDE)
    tap.feed(sse)
    assert tap.complete and tap.saw_usage
    assert (tap.usage.input_tokens, tap.usage.output_tokens) == (25, 3)


def test_frames_split_anywhere_decode_the_same() -> None:
    whole = decode([STREAM])
    assert decode([STREAM[i : i + 1] for i in range(len(STREAM))]) == whole  # byte by byte
    for cut in range(1, len(STREAM), 37):  # one split at many places, inside preludes and payloads
        assert decode([STREAM[:cut], STREAM[cut:]]) == whole
    uneven = [STREAM[i : i + 53] for i in range(0, len(STREAM), 53)]  # several frames per chunk too
    assert decode(uneven) == whole


def test_an_event_is_emitted_as_soon_as_its_frame_is_complete() -> None:
    first = chunk_frame(EVENTS[0])
    decoder = EventStreamDecoder()
    assert decoder.feed(first[:-1]) == b""
    out = decoder.feed(first[-1:])
    assert out.startswith(b"event: message_start\ndata: {") and out.endswith(b"\n\n")


def test_exception_frame_becomes_an_error_event_and_ends_the_stream() -> None:
    throttled = exception_frame("throttlingException", "Too many tokens, please wait before trying again.")
    sse = decode([STREAM[: len(chunk_frame(EVENTS[0]))] + throttled + chunk_frame(EVENTS[2])])
    events = parsed(sse)
    assert [name for name, _ in events] == ["message_start", "error"]
    assert events[1][1] == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Too many tokens, please wait before trying again."},
    }
    tap = StreamTap(CLAUDE)
    tap.feed(sse)
    assert not tap.complete and tap.usage.input_tokens == 25  # billed for what was seen, truncated


def test_model_stream_error_and_generic_error_frames() -> None:
    failed = exception_frame("modelStreamErrorException", "The model stopped.")
    assert parsed(decode([failed])) == [
        ("error", {"type": "error", "error": {"type": "api_error", "message": "The model stopped."}})
    ]
    generic = frame(
        {":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"}, b""
    )
    assert parsed(decode([generic]))[0][1]["error"] == {"type": "api_error", "message": "boom"}


def test_other_events_are_skipped() -> None:
    other = frame({":message-type": "event", ":event-type": "initial-response"}, b"{}")
    assert decode([other, chunk_frame(EVENTS[4])]) == decode([chunk_frame(EVENTS[4])])


def test_bad_checksum_stops_at_the_broken_frame() -> None:
    good = chunk_frame(EVENTS[0])
    broken = bytearray(chunk_frame(EVENTS[2]))
    broken[-10] ^= 0xFF  # payload byte: the message CRC no longer matches
    after = chunk_frame(EVENTS[4])
    sse = decode([good + bytes(broken) + after])
    assert [name for name, _ in parsed(sse)] == ["message_start"]


def test_garbage_never_raises_and_emits_nothing() -> None:
    for junk in (
        b"\x00" * 64,
        b"event: message_start\ndata: {}\n\n",  # SSE where frames were expected
        b"\xff" * 12 + b"x" * 100,
        bytes(range(256)) * 3,
    ):
        decoder = EventStreamDecoder()
        assert decoder.feed(junk) == b"" and decoder.feed(STREAM) == b"" and decoder.finish() == b""


def test_frames_with_unreadable_payloads_stop_the_stream() -> None:
    chunk = {":message-type": "event", ":event-type": "chunk"}
    for payload in (
        b"not json",
        b'{"bytes": "%%% not base64"}',
        orjson.dumps({"bytes": "bm90IGpzb24="}),  # base64 of "not json"
        orjson.dumps({"bytes": "eyJubyI6InR5cGUifQ=="}),  # {"no":"type"}
        orjson.dumps({"nobytes": 1}),
    ):
        decoder = EventStreamDecoder()
        first = decoder.feed(chunk_frame(EVENTS[0]))
        assert first.startswith(b"event: message_start")
        assert decoder.feed(frame(chunk, payload) + chunk_frame(EVENTS[4])) == b""


def test_a_cut_in_the_middle_of_a_frame_leaves_an_unfinished_stream() -> None:
    frames = [chunk_frame(event) for event in EVENTS]
    cut = b"".join(frames[:3]) + frames[3][:20]
    sse = decode([cut])
    tap = StreamTap(CLAUDE)
    tap.feed(sse)
    assert [name for name, _ in parsed(sse)] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
    ]
    assert not tap.complete and tap.saw_usage
