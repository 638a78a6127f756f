"""Stored responses: a Responses API id lives on the account that made it.

When an API-key account makes a response the upstream keeps (`store` not false), the relay
remembers which account made it and for which user, in shared state with a TTL (one string key
per id, so every instance knows). The calls on one response (`GET`/`DELETE /responses/{id}`,
`POST /responses/{id}/cancel`, `GET /responses/{id}/input_items`) then go to that account, and
only for that user: an id the relay does not know, or another user's, is a 404 without calling
anyone. These calls are free (the response was billed when it was made) and logged like any
request. Subscription (ChatGPT) accounts never store responses, so their ids are never kept.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING

from ..store.state import SharedState, StateUnavailable, warn_unavailable
from . import errors as e
from .errors import RESPONSES, GatewayError, error_body
from .http_client import UpstreamError
from .providers import UpstreamRequest, provider_for
from .upstream import DROP_RESPONSE_HEADERS

if TYPE_CHECKING:
    from .auth import Caller
    from .pipeline import Call, Gateway
    from .relay import Outcome
    from .scheduler import Candidate

log = logging.getLogger(__name__)
OWNER_PREFIX = "response:"
# How long an id is remembered: the upstream keeps stored responses for weeks, clients come back
# to one within a conversation. A day bounds what the in-process state holds.
OWNER_TTL = 24 * 3600.0
_ID_IN_ANSWER = re.compile(rb'"id"\s*:\s*"(resp_[A-Za-z0-9_-]{1,200})"')
_SCAN_BYTES = 4096  # the response's id comes first in its object and in `response.created`
_SUFFIX = {"response": "", "response_cancel": "/cancel", "response_input_items": "/input_items"}


def response_id_in(data: bytes) -> str:
    """The first Responses id in the head of an answer (a response object or its first event)."""
    found = _ID_IN_ANSWER.search(data, 0, _SCAN_BYTES)
    return found.group(1).decode() if found else ""


def owner_key(response_id: str) -> str:
    return OWNER_PREFIX + response_id


class ResponseOwners:
    """`response:<id>` → `<account id>:<user id>` in shared state."""

    def __init__(self, state: SharedState) -> None:
        self._state = state

    async def remember(self, response_id: str, account_id: int, user_id: int) -> None:
        try:
            await self._state.set(owner_key(response_id), f"{account_id}:{user_id}", ttl=OWNER_TTL)
        except StateUnavailable as exc:
            warn_unavailable(log, "response ids not remembered", exc)

    async def owner(self, response_id: str) -> tuple[int, int] | None:
        """(account id, user id), or None when unknown. Raises StateUnavailable (the client's 503)."""
        value = await self._state.get(owner_key(response_id))
        if not value:
            return None
        account, _, user = value.partition(":")
        try:
            return int(account), int(user)
        except ValueError:
            return None

    async def forget(self, response_id: str) -> None:
        try:
            await self._state.delete(owner_key(response_id))
        except StateUnavailable as exc:
            warn_unavailable(log, "a deleted response id kept until it expires", exc)


async def remember_made(gateway: Gateway, call: Call, outcome: Outcome) -> None:
    """Keep which account made a response the upstream stores, for the calls on its id."""
    account = gateway.pool.accounts.get(outcome.account_id) if outcome.account_id else None
    stored = call.payload.get("store") is not False and account is not None and not account.oauth
    if outcome.status == "success" and stored:
        await gateway.response_owners.remember(outcome.response_id, account.id, call.caller.user_id)


async def maker_first(gateway: Gateway, call: Call, ordered: list[Candidate]) -> None:
    """A request that continues a stored response (`previous_response_id`) goes first to the account
    that made it: no other account knows that response."""
    previous = call.payload.get("previous_response_id")
    if not isinstance(previous, str) or len(ordered) < 2:
        return
    try:
        owner = await gateway.response_owners.owner(previous)
    except StateUnavailable as exc:
        warn_unavailable(log, "previous_response_id served by any account", exc)
        return
    if owner is not None and owner[1] == call.caller.user_id:
        ordered.sort(key=lambda c: c.account.id != owner[0])  # stable: the rest keep their order


async def serve_stored(gateway: Gateway, call: Call, caller: Caller) -> None:
    """One call on a stored response, sent to the account that made it; one request-log row."""
    endpoint = call.endpoint
    response_id = endpoint.response_id
    try:
        owner = await gateway.response_owners.owner(response_id)
    except StateUnavailable:
        raise GatewayError(503, e.STATE_UNAVAILABLE) from None
    account = gateway.pool.accounts.get(owner[0]) if owner and owner[1] == caller.user_id else None
    if account is None:
        raise GatewayError(404, f"No response found with id '{response_id}'.", code="not_found")
    if caller.allowed_platforms is not None and account.type not in caller.allowed_platforms:
        raise GatewayError(403, e.PLATFORM_FORBIDDEN)
    method = call.scope["method"]
    provider = provider_for(account, RESPONSES)
    request = UpstreamRequest(
        model="",
        client_headers=call.headers,
        query=call.query,
        subpath=f"/{response_id}{_SUFFIX[endpoint.kind]}",
        configs=gateway.configs,
    )
    upstream = provider.build(account, request)
    read_timeout = float(gateway.configs.get("timeout"))
    status, first_byte = 200, 0.0

    def logged(event_status: str, error: str = "") -> None:
        if status >= 400 and event_status == "success":
            event_status, error = "error", f"upstream answered HTTP {status}"
        event = gateway._event(call, event_status, status, error)
        event.account_id, event.platform = account.id, account.type
        event.first_byte_ms = max(1, round(first_byte * 1000)) if first_byte else 0
        gateway._record(call, event)

    try:
        response = await gateway.relay.clients.http.request(
            method,
            upstream.url,
            headers=upstream.headers,
            proxy_url=account.proxy_url,
            read_timeout=read_timeout,
        )
        try:
            status = response.status
            if method == "DELETE" and status < 400:
                await gateway.response_owners.forget(response_id)  # gone before the client hears so
            out_headers = [
                (name, value) for name, value in response.header_list if name not in DROP_RESPONSE_HEADERS
            ]
            await call.send({"type": "http.response.start", "status": status, "headers": out_headers})
            first_byte = time.perf_counter() - call.started
            # A retrieve may stream (`?stream=true`): pieces are passed on as they arrive.
            while chunk := await response.next_chunk():
                await call.send({"type": "http.response.body", "body": chunk, "more_body": True})
            # Logged before the answer ends: a call the client makes next is always logged after it.
            logged("success")
            await call.send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            response.release()
    except UpstreamError as exc:
        if call.recorded:
            return  # the whole answer was out; only its end could not be told
        error = f"upstream request failed: {type(exc).__name__}"
        if call.responded:
            logged("truncated", error)
            return
        status, first_byte = 502, 0.0
        body = error_body(RESPONSES, 502, e.UPSTREAM_FAILED)
        logged("error", error)
        await call.send({"type": "http.response.start", "status": 502, "headers": _json_headers(body)})
        await call.send({"type": "http.response.body", "body": body})


def _json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
