"""One Responses WebSocket conversation, upstream side: which account, which wire, and its history.

A client socket (`websocket.py`) keeps one account for all its turns: the first turn is scheduled
and may fail over like any request until its first event; from then on `narrow` leaves the relay
only that account. Each turn then goes out one of two ways:

- over the vendor's own Responses WebSocket, one upstream connection per client socket, reused by
  every turn (`previous_response_id` then means what the client meant). Used for API-key accounts
  of the `openai` and `openai-responses` types unless the runtime config `websocket_upstream` is off.
  When it fails before a turn's first event, that turn goes over HTTP instead: a vendor socket that
  cannot be opened (or a new one that says nothing) keeps the account on HTTP for this client
  socket, one that had served before (a vendor idle timeout, say) is opened anew at the next turn;
- over HTTP SSE (the bridge): ChatGPT-subscription (OAuth) accounts, whose backend refuses
  `previous_response_id` and `generate` over HTTP, and every fallback. HTTP keeps no state
  (`store: false`), so the relay replays it: it keeps the input and output items of the responses
  it relayed on this socket, and a turn naming one of them as `previous_response_id` goes upstream
  with the whole history plus its new items and without that field. A warm-up (`generate: false`)
  is answered by the relay itself on this path, with an empty output and no usage: nothing is
  generated, so nothing is worth an upstream call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from ..billing.pricing import Usage
from ..security.masking import mask_text
from .errors import RESPONSES, stream_cut_notice
from .relay import Failure, Outcome
from .usage import StreamTap

if TYPE_CHECKING:
    from .pipeline import Call, Gateway
    from .pool import PoolAccount
    from .providers import Provider, UpstreamRequest
    from .relay import Relay
    from .scheduler import Candidate

log = logging.getLogger(__name__)
WEBSOCKET_TYPES = frozenset({"openai", "openai-responses"})
HISTORY_KEPT = 4  # responses per socket whose history a later turn may continue from
TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})
_RECORDED_EVENTS = frozenset({"response.created", "response.output_item.done", *TERMINAL_EVENTS})
_NOT_SENT_UPSTREAM = frozenset({"content-type", "content-length", "accept-encoding", "accept"})


def input_items(value: Any) -> list[Any]:
    """The Responses `input` as a list of items (a string is one user message)."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    return list(value) if isinstance(value, list) else []


def replayable(item: Any) -> Any:
    """An output item as input of a later request: without its id (unstored items cannot be named)."""
    return {k: v for k, v in item.items() if k != "id"} if isinstance(item, dict) else item


class UpstreamSocket:
    """The vendor WebSocket of one client socket, and the responses it produced (what it can continue)."""

    __slots__ = ("account_id", "produced", "ws")

    def __init__(self, account_id: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.account_id = account_id
        self.ws = ws
        self.produced: set[str] = set()


class Conversation:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.account_id: int | None = None  # the socket's account, once a turn had its first event
        self.upstream: UpstreamSocket | None = None
        self.upstream_lost = False  # the vendor socket broke mid-turn: the client socket ends too
        self.connections = 0  # vendor sockets opened for this client socket
        self._http_only: set[int] = set()  # accounts whose vendor socket failed: HTTP from now on
        self._history: dict[str, list[Any]] = {}
        self._trying: int | None = None  # the account of the attempt in progress
        self._turn_input: list[Any] = []
        self._turn_output: list[Any] = []
        self._completed: str | None = None  # the id of the turn's response, once completed

    # -- the turn as the client sent it ----------------------------------------------------------

    def begin(self, payload: dict[str, Any]) -> None:
        """A new turn: what its whole input is, as far as this socket knows the history."""
        known = self._known(payload.get("previous_response_id"))
        new_items = input_items(payload.get("input"))
        self._turn_input = [*known, *new_items] if known is not None else new_items
        self._turn_output = []
        self._completed = None

    def _known(self, response_id: Any) -> list[Any] | None:
        return self._history.get(response_id) if isinstance(response_id, str) else None

    def replayed(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The turn with its history written out instead of a `previous_response_id` (when known)."""
        known = self._known(payload.get("previous_response_id"))
        if known is None:
            return payload
        body = {k: v for k, v in payload.items() if k != "previous_response_id"}
        body["input"] = [*known, *input_items(payload.get("input"))]
        return body

    def observe(self, event: str | None, data: bytes) -> str | None:
        """An event on its way to the client: the response ids and output items history is made of.
        Returns the event's type when it is one of those (or ends the response)."""
        if event is not None and event not in _RECORDED_EVENTS:
            return None
        try:
            decoded = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        kind = decoded.get("type") if isinstance(decoded, dict) else None
        if kind == "response.created":
            if self.account_id is None:
                self.account_id = self._trying  # the first event: the socket keeps this account
        elif kind == "response.output_item.done":
            self._turn_output.append(decoded.get("item"))
        elif kind in ("response.completed", "response.incomplete"):
            response = decoded.get("response")
            if not isinstance(response, dict) or not isinstance(response.get("id"), str):
                return kind
            output = response.get("output")
            items = output if isinstance(output, list) and output else self._turn_output
            self._history[response["id"]] = [*self._turn_input, *(replayable(i) for i in items)]
            while len(self._history) > HISTORY_KEPT:
                del self._history[next(iter(self._history))]
            self._completed = response["id"]
        return kind if isinstance(kind, str) else None

    # -- scheduling --------------------------------------------------------------------------------

    def narrow(self, ordered: list[Candidate]) -> list[Candidate]:
        """Once the socket has its account, only that one (its upstream state lives there)."""
        if self.account_id is None:
            return ordered
        return [c for c in ordered if c.account.id == self.account_id]

    def _websocket_capable(self, account: PoolAccount) -> bool:
        return (
            account.type in WEBSOCKET_TYPES
            and not account.oauth
            and account.id not in self._http_only
            and bool(self.gateway.configs.get("websocket_upstream"))
        )

    async def attempt(
        self,
        relay: Relay,
        call: Call,
        candidate: Candidate,
        account: PoolAccount,
        provider: Provider,
        request: UpstreamRequest,
    ) -> Outcome | Failure | None:
        """This turn on this account: over the vendor socket (an outcome or a failure), a warm-up
        answered here, or None: the relay sends `call.payload` (now bridged) over HTTP."""
        self._trying = account.id
        if self._websocket_capable(account):
            result = await self._over_websocket(relay, call, candidate, account, provider, request)
            if result is not None:
                return result
        if call.payload.get("generate") is False:
            return await self._warm_up(call, candidate, account)
        bridged = self.bridged(call.payload)
        call.payload = bridged
        call.body = orjson.dumps(bridged)
        return None

    def bridged(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The turn as an HTTP request: its history written out, without the WebSocket-only field."""
        bridged = self.replayed(payload)
        if "generate" in bridged:
            bridged = {k: v for k, v in bridged.items() if k != "generate"}
        return bridged

    # -- the vendor socket -----------------------------------------------------------------------

    async def _connection(
        self, relay: Relay, account: PoolAccount, provider: Provider, request: UpstreamRequest
    ) -> UpstreamSocket | None:
        current = self.upstream
        if current is not None and current.account_id == account.id and not current.ws.closed:
            return current
        await self.close()
        target = provider.build(account, request, b"")
        url = str(target.url).replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        headers = {k: v for k, v in target.headers.items() if k not in _NOT_SENT_UPSTREAM}
        session, proxy = await relay.clients.websocket_session(account.proxy_url)
        try:
            async with asyncio.timeout(float(self.gateway.configs.get("timeout"))):
                ws = await session.ws_connect(
                    url, headers=headers, proxy=proxy, max_msg_size=0, autoping=True, heartbeat=None
                )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("account %s: no upstream WebSocket (%s); its turns go over HTTP", account.id, exc)
            self._http_only.add(account.id)
            return None
        self.connections += 1
        self.upstream = UpstreamSocket(account.id, ws)
        return self.upstream

    async def _next_frame(self, upstream: UpstreamSocket) -> bytes | None:
        """The next frame's JSON, or None when the vendor socket closed, failed or went quiet."""
        try:
            message = await upstream.ws.receive(timeout=float(self.gateway.configs.get("timeout")))
        except (TimeoutError, aiohttp.ClientError, OSError):
            return None
        if message.type == aiohttp.WSMsgType.TEXT:
            return message.data.encode()
        if message.type == aiohttp.WSMsgType.BINARY:
            return bytes(message.data)
        return None

    async def _over_websocket(
        self,
        relay: Relay,
        call: Call,
        candidate: Candidate,
        account: PoolAccount,
        provider: Provider,
        request: UpstreamRequest,
    ) -> Outcome | Failure | None:
        opened = self.connections
        upstream = await self._connection(relay, account, provider, request)
        if upstream is None:
            return None
        fresh = self.connections != opened
        payload = call.payload
        if payload.get("previous_response_id") not in upstream.produced:
            payload = self.replayed(payload)  # made on HTTP or an earlier vendor socket: written out
        frame = {"type": "response.create", **payload, **provider.body_changes(account, request, payload)}
        metrics = self.gateway.metrics
        sent = time.perf_counter()
        try:
            await upstream.ws.send_str(orjson.dumps(frame).decode())
            first = await self._next_frame(upstream)
        except (aiohttp.ClientError, ConnectionError, RuntimeError):
            first = None
        if first is None:  # nothing came: this turn goes over HTTP, on the same account
            metrics.upstream_answered(account.type, "network_error", time.perf_counter() - sent)
            if fresh:  # a new vendor socket that says nothing: HTTP from now on
                self._http_only.add(account.id)
            await self.close()  # one that had served (and may have timed out idle): a new one next turn
            return None
        error = _error_of(first)
        metrics.upstream_answered(account.type, "ok" if error is None else "4xx", time.perf_counter() - sent)
        if error is not None:  # refused before any event: failover and the error rules apply
            status, detail = error
            body = orjson.dumps({"error": detail})
            return Failure(status, body, {}, mask_text(body[:500].decode("utf-8", "replace")))
        outcome = Outcome("success", 200, account.id, account.type, candidate.upstream_model)
        await self._stream(call, upstream, first, outcome)
        return outcome

    async def _stream(self, call: Call, upstream: UpstreamSocket, first: bytes, outcome: Outcome) -> None:
        """Vendor frames to the client until the response ends; usage read as for an SSE stream."""
        tap = StreamTap(RESPONSES)
        await call.send({"type": "http.response.start", "status": 200, "headers": []})
        outcome.first_byte = time.perf_counter() - call.started
        renew_every = self.gateway.slot_lease() / 3
        renewed = time.monotonic()
        failed = False
        try:
            raw: bytes | None = first
            while raw is not None:
                chunk = b"data: " + raw + b"\n\n"
                tap.feed(chunk)
                await call.send({"type": "http.response.body", "body": chunk, "more_body": True})
                failed = _error_of(raw) is not None
                if tap.complete or failed:
                    break
                if time.monotonic() - renewed > renew_every:
                    renewed = time.monotonic()
                    await self.gateway.renew_leases(call)
                raw = await self._next_frame(upstream)
            else:
                outcome.status = "truncated"
                outcome.error = "upstream WebSocket closed mid-response"
                self.upstream_lost = True
        except asyncio.CancelledError:
            watch = call.watch
            if watch is None or not watch.gone:
                raise
            task = asyncio.current_task()
            assert task is not None
            task.uncancel()
            outcome.status = "client_gone"
        finally:
            call.stop_watching()
        if outcome.status == "client_gone" or self.upstream_lost:
            await self.close()  # mid-response: this vendor socket cannot take the next turn
        elif failed:
            outcome.status, outcome.error = "truncated", "upstream error event mid-response"
        elif tap.complete and self._completed is not None:
            upstream.produced.add(self._completed)
        outcome.usage = tap.usage if tap.saw_usage else None
        tail = stream_cut_notice(RESPONSES) if outcome.status == "truncated" and not failed else b""
        await call.send({"type": "http.response.body", "body": tail, "more_body": False})
        if outcome.status != "success":
            outcome.flags.append(outcome.status)
        if outcome.usage is None:
            outcome.flags.append("no_usage")

    async def _warm_up(self, call: Call, candidate: Candidate, account: PoolAccount) -> Outcome:
        """`generate: false` on HTTP: the response the client continues from, made here (nothing to
        generate, so no upstream call and no usage)."""
        call.stop_watching()
        response: dict[str, Any] = {
            "id": "resp_" + secrets.token_hex(24),
            "object": "response",
            "created_at": int(time.time()),
            "status": "in_progress",
            "error": None,
            "model": candidate.upstream_model,
            "output": [],
            "previous_response_id": None,
            "store": False,
            "usage": None,
        }
        usage = {
            "input_tokens": 0,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 0,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 0,
        }
        created = {"type": "response.created", "sequence_number": 0, "response": response}
        done = {
            "type": "response.completed",
            "sequence_number": 1,
            "response": {**response, "status": "completed", "usage": usage},
        }
        body = b"".join(b"data: " + orjson.dumps(event) + b"\n\n" for event in (created, done))
        await call.send({"type": "http.response.start", "status": 200, "headers": []})
        outcome = Outcome("success", 200, account.id, account.type, candidate.upstream_model, usage=Usage())
        outcome.first_byte = time.perf_counter() - call.started
        await call.send({"type": "http.response.body", "body": body, "more_body": False})
        outcome.flags.append("local_warmup")
        return outcome

    async def close(self) -> None:
        upstream, self.upstream = self.upstream, None
        if upstream is not None and not upstream.ws.closed:
            with contextlib.suppress(TimeoutError, aiohttp.ClientError, OSError):
                await asyncio.wait_for(upstream.ws.close(), 5)


def _error_of(frame: bytes) -> tuple[int, dict[str, Any]] | None:
    """(status, error object) of a vendor `error` frame; None for any other event."""
    if b'"error"' not in frame[:256]:  # cheap: the type comes first in every vendor event
        return None
    try:
        decoded = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(decoded, dict) or decoded.get("type") != "error":
        return None
    detail = decoded.get("error")
    if not isinstance(detail, dict):  # the SSE shape: code and message at the top
        detail = {k: decoded.get(k) for k in ("type", "code", "message", "param")}
        detail["type"] = "server_error"
    status = decoded.get("status")
    return (status if isinstance(status, int) and status >= 400 else 500), detail
