"""Sending an upstream answer to the client: whole, or streamed event by event.

Streams are flushed per chunk as they arrive (`X-Accel-Buffering: no` keeps reverse
proxies from holding them), watched by a usage tap, converted when the client speaks
another protocol, and cut cleanly when either side goes away: a client that disconnects
cancels the upstream read at once, and whatever usage was seen is still billed.

Nothing is sent before the upstream's first body bytes are in hand: an upstream that
answers 200 and then breaks (or says nothing) raises `UpstreamBroke`, and the relay fails
over as for any other upstream error.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import orjson

from .convert.openai_claude import wants_stream_usage
from .errors import stream_cut_notice
from .http_client import UpstreamError, UpstreamResponse
from .providers import Provider, UpstreamRequest
from .response_owners import response_id_in
from .routes import FREE_KINDS
from .upstream import DROP_RESPONSE_HEADERS
from .usage import StreamTap, usage_from_body

if TYPE_CHECKING:
    from .pipeline import Call, Gateway, Plan
    from .relay import Outcome

JSON_ARRAY_LIMIT = 16 * 1024 * 1024


class UpstreamBroke(Exception):
    """The upstream stream failed before anything reached the client (the cause is chained)."""


class AnswerUnreadable(Exception):
    """A whole upstream answer that cannot be converted for the client."""


def client_headers(
    upstream: list[tuple[bytes, bytes]], *, content_type: str | None = None
) -> list[tuple[bytes, bytes]]:
    """The vendor's answer headers a client gets, passed on as they came (names lower-cased by the
    HTTP client), and its content type: `content_type` when the relay changed the body's format."""
    headers = []
    kept_type = b"application/json"
    for name, value in upstream:
        if name == b"content-type":
            kept_type = value
        elif name not in DROP_RESPONSE_HEADERS:
            headers.append((name, value))
    headers.append((b"content-type", content_type.encode() if content_type else kept_type))
    return headers


def prepare_answer(
    call: Call,
    plan: Plan,
    provider: Provider,
    request: UpstreamRequest,
    header_list: list[tuple[bytes, bytes]],
    body: bytes,
    outcome: Outcome,
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body for the client, with the usage read; raises `AnswerUnreadable`."""
    try:
        decoded = provider.decode_answer(request, body)
    except Exception as exc:  # an untrusted body: any shape error means "unreadable"
        raise AnswerUnreadable(f"{type(exc).__name__}") from exc
    content_type = None  # as the vendor said
    if decoded is not body:  # unwrapped or aggregated into the provider's wire: JSON now
        body, content_type = decoded, "application/json"
    outcome.usage = usage_from_body(provider.wire, body)
    if call.endpoint.kind == "responses":
        outcome.response_id = response_id_in(body)
    found = call.conversion
    if found is not None and found.answer_steps:  # into the client's protocol
        try:
            body = orjson.dumps(found.answer(orjson.loads(body), model=plan.model))
        except Exception as exc:  # an untrusted body: any shape error means "unreadable"
            raise AnswerUnreadable(f"{type(exc).__name__}") from exc
        content_type = "application/json"
    out_headers = client_headers(header_list, content_type=content_type)
    out_headers.append((b"content-length", str(len(body)).encode()))
    return out_headers, body


async def send_answer(
    call: Call, status: int, answer: tuple[list[tuple[bytes, bytes]], bytes], outcome: Outcome
) -> None:
    out_headers, body = answer
    outcome.first_byte = time.perf_counter() - call.started
    await call.send({"type": "http.response.start", "status": status, "headers": out_headers})
    await call.send({"type": "http.response.body", "body": body})
    if outcome.usage is None and call.endpoint.kind not in FREE_KINDS:
        outcome.flags.append("no_usage")


async def relay_stream(
    call: Call,
    plan: Plan,
    provider: Provider,
    request: UpstreamRequest,
    response: UpstreamResponse,
    headers: dict[str, str],
    outcome: Outcome,
    gateway: Gateway,
) -> None:
    """Upstream chunks → the provider's decoder (into SSE of its wire) → the usage tap → the
    client's conversion or the provider's filter → the client."""
    decoder = provider.stream_decoder(request)
    is_sse = decoder is not None or headers.get("content-type", "").startswith("text/event-stream")
    tap = StreamTap(provider.wire) if is_sse else None
    buffered = bytearray()  # a JSON-array stream (Gemini without alt=sse): parsed at the end
    found = call.conversion
    # Into the client's protocol (the converter ends a cut stream with the client's own error event).
    to_client = (
        found.stream(
            model=plan.model,
            chat_usage=wants_stream_usage(call.payload),
            gemini_sse=call.endpoint.kind == "gemini_chat" or "alt=sse" in call.query,
        )
        if found is not None
        else None
    )
    converter = to_client if to_client is not None else provider.stream_filter(request) if is_sse else None
    sse_out = to_client is not None or decoder is not None
    content_type = getattr(converter, "content_type", None) or ("text/event-stream" if sse_out else None)
    out_headers = client_headers(response.header_list, content_type=content_type)
    out_headers.append((b"x-accel-buffering", b"no"))
    if "cache-control" not in headers:
        out_headers.append((b"cache-control", b"no-cache"))
    next_chunk = response.next_chunk
    try:
        first = await next_chunk()
    except UpstreamError as exc:
        raise UpstreamBroke from exc
    if not first:
        raise UpstreamBroke("the upstream answered with an empty stream")
    if call.endpoint.kind == "responses":  # `response.created` opens the stream
        outcome.response_id = response_id_in(first)
    send = call.send
    await send({"type": "http.response.start", "status": response.status, "headers": out_headers})
    outcome.first_byte = time.perf_counter() - call.started

    watch = call.watch
    renew_every = gateway.slot_lease() / 3
    renewed = time.monotonic()
    try:
        chunk = first
        while True:
            if decoder is not None:
                chunk = decoder.feed(chunk)
            if tap is not None:
                tap.feed(chunk)
            elif len(buffered) < JSON_ARRAY_LIMIT:
                buffered += chunk
            out = converter.feed(chunk) if converter is not None else chunk
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
                answered = to_client.completed if to_client is not None else tap is not None and tap.complete
                if answered or (tap is not None and tap.failed):
                    # The client has its whole answer ([DONE], or the relayed stream's last event) or
                    # the stream's error event, and may close before the upstream's own end arrives
                    # (Codex exits at `response.completed`): that is no disconnect.
                    call.stop_watching()
            if time.monotonic() - renewed > renew_every:
                renewed = time.monotonic()
                await gateway.renew_leases(call)
            chunk = await next_chunk()
            if not chunk:
                break
    except asyncio.CancelledError:
        if watch is None or not watch.gone:
            raise
        task = asyncio.current_task()
        assert task is not None
        task.uncancel()
        outcome.status = "client_gone"
    except UpstreamError as exc:
        outcome.status = "truncated"
        outcome.error = f"upstream stream broke: {type(exc).__name__}"
    finally:
        call.stop_watching()  # the stream is over: usage seen so far can no longer be lost
    tail = b""
    if decoder is not None and outcome.status != "client_gone":
        rest = decoder.finish()  # what the decoder held back at the end (the last events)
        if tap is not None:
            tap.feed(rest)
        tail = converter.feed(rest) if converter is not None else rest
    if tap is not None:
        outcome.usage = tap.usage if tap.saw_usage else None
        complete = tap.complete
    else:
        outcome.usage = usage_from_body(provider.wire, bytes(buffered))
        complete = outcome.status == "success"
    if not complete and outcome.status == "success":
        outcome.status = "truncated"
        outcome.error = outcome.error or "upstream stream ended early"
    if converter is not None:
        tail += converter.finish()  # a conversion ends a cut stream with the client's error itself
    if outcome.status == "truncated" and to_client is None:
        tail += stream_cut_notice(call.endpoint.family)
    await send({"type": "http.response.body", "body": tail, "more_body": False})
    if outcome.status != "success":
        outcome.flags.append(outcome.status)
    if outcome.usage is None:
        outcome.flags.append("no_usage")
