"""One proxy request, top to bottom.

API key → caller checks (status, expiry, platform, model) → limits (per minute, per
day, per month, user concurrency) → candidate accounts → attempts with failover
(`relay.py`) → usage billed and recorded. Every refusal answers in the error shape of
the client's own protocol.

Every request that reaches the gateway ends as exactly one request-log row, whatever
happens: served, truncated, refused (with or without a valid key), abandoned by the
client, failed upstream, or broken by a bug. `Gateway.handle` is the one place that
guarantees it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import orjson

from ..billing.pricing import Cost, ModelPrice, PriceBook, cost_of, effective_rate
from ..billing.recorder import UsageRecorder
from ..billing.usage_event import UsageEvent
from ..client_address import client_address
from ..observe import context as log_context
from ..observe.metrics import Metrics
from ..security.masking import mask_text
from ..services import Services
from ..store import client_filter as client_filter_store
from ..store.accounts import ACCOUNT_TYPES
from . import errors as e
from .admission import Admission, Request, Ticket
from .asgi import Receive, Scope, Send, send_whole
from .auth import Caller, KeyCache, key_from_headers
from .body_encoding import read_request_body
from .client_filter import BODYLESS_KINDS, ClientFilter, build_filter, check_client
from .convert.compose import Conversion
from .disconnect import DisconnectWatch
from .errors import CLAUDE, GEMINI, OPENAI, RESPONSES, GatewayError, error_body
from .health import HealthChecker
from .limits import Limits, check_caller, check_model_allowed
from .live_state import scrape_figures
from .logged_request import captured_body, logged_headers, logged_value
from .model_list import model_list
from .pool import AccountPool
from .quotas import QuotaBoard
from .relay import Outcome, Relay
from .response_owners import ResponseOwners, remember_made, serve_stored
from .routes import FREE_KINDS, STORED_KINDS, Endpoint, family_of_path, match
from .scheduler import StickySessions
from .tokens import TokenStore

if TYPE_CHECKING:
    from .socket_bridge import Conversation

log = logging.getLogger(__name__)
JSON_HEADERS = [(b"content-type", b"application/json")]
CLIENT_GONE_STATUS = 499  # the client closed the connection before the answer (nginx's convention)
# Prefix routing for models the table does not know (contract: never free, flagged).
_PREFIX_PLATFORMS = (
    ("claude", "claude-official"),
    ("gpt", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("codex", "openai"),
    ("chatgpt", "openai"),
    ("gemini", "gemini"),
    ("gemma", "gemini"),
)
RESPONSES_DEFAULT_MODEL = "gpt-4"  # the Responses route's documented default
_ROUTE_PLATFORM = {CLAUDE: "claude-official", OPENAI: "openai", RESPONSES: "openai", GEMINI: "gemini"}
_ALL_FAMILIES = (CLAUDE, OPENAI, RESPONSES, GEMINI)
# Model platform → the account families that serve it (the chat route narrows "openai": see `_plan`).
_PLATFORM_FAMILIES: dict[str | None, tuple[str, ...]] = {
    "claude-official": (CLAUDE,),
    "gemini": (GEMINI,),
    "openai": (OPENAI, RESPONSES),
}
_ROUTE_FAMILIES = {CLAUDE: (CLAUDE,), GEMINI: (GEMINI,), RESPONSES: (RESPONSES, OPENAI), OPENAI: (OPENAI,)}


# Routing depends on a handful of values only: worked out once per combination, not per request.


@functools.lru_cache(maxsize=256)
def _routing(
    route_family: str, platform: str | None, forced_type: str | None
) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...], tuple[str, ...]]:
    """A plan's families, its fallbacks and their last resort (see `Plan`)."""
    if forced_type:
        return (ACCOUNT_TYPES[forced_type].family,), (), ()
    fallbacks: tuple[tuple[str, ...], ...] = ()
    families = _PLATFORM_FAMILIES.get(platform) or _ROUTE_FAMILIES[route_family]
    if route_family == OPENAI and OPENAI in families:
        # Chat stays with chat accounts; a Responses API account serves when none can.
        families, fallbacks = (OPENAI,), ((RESPONSES,),)
    # Then the route's own family (an OpenAI-compatible upstream serving Gemini models on the chat
    # route, say), then any other: an account of the key's group that can serve the model.
    rest: tuple[str, ...] = ()
    for wanted in (_ROUTE_FAMILIES[route_family], _ALL_FAMILIES):
        rest = tuple(f for f in wanted if f not in families and all(f not in fb for fb in fallbacks))
        if rest:
            fallbacks += (rest,)
    return families, fallbacks, rest


@functools.lru_cache(maxsize=256)
def _account_types(
    forced_type: str | None,
    families: tuple[str, ...],
    fallbacks: tuple[tuple[str, ...], ...],
    last_resort: tuple[str, ...],
) -> frozenset[str]:
    """The account types that may serve a plan (what platform permissions are checked on).

    The last resort of an unforced plan (any other family) is left out: it widens no permission."""
    if forced_type:
        return frozenset((forced_type,))
    allowed = families + tuple(f for fb in fallbacks for f in fb if f not in last_resort)
    return frozenset(t.name for t in ACCOUNT_TYPES.values() if t.family in allowed)


@dataclass(slots=True)
class Plan:
    """Where a request goes: account families, the client's protocol, the model and its price.

    An account whose protocol is not the client's serves it converted (convert/compose.py picks the
    translators per attempt, from the client protocol and the account's upstream protocol)."""

    families: tuple[str, ...]
    client: str  # the client's protocol: a key of convert.compose.CLIENT_PROTOCOLS
    model: str
    forced_type: str | None
    platform: str
    price: ModelPrice | None
    flags: list[str] = field(default_factory=list)
    # Families taken instead, in order, when `families` has no candidate account (`Relay._ordered`
    # switches to them, so the plan always says what was used). The last one of an unforced plan is
    # every other family: an account of another family in the key's group serves rather than none.
    fallbacks: tuple[tuple[str, ...], ...] = ()
    last_resort: tuple[str, ...] = ()  # the families only that last fallback adds (it widens no permission)


@dataclass(slots=True)
class Call:
    """One request as the gateway learns about it; filled in step by step."""

    scope: Scope
    receive: Receive
    _send: Send
    request_id: str
    started: float
    endpoint: Endpoint | None = None
    headers: dict[bytes, bytes] = field(default_factory=dict)
    query: str = ""
    body: bytes = b""
    payload: dict[str, Any] = field(default_factory=dict)
    caller: Caller | None = None  # None until the key is resolved
    plan: Plan | None = None
    converted: dict[str, dict[str, Any]] = field(default_factory=dict)  # upstream protocol → body, once
    conversion: Conversion | None = None  # the translators of the current attempt (None: same protocol)
    stream: bool = False
    ticket: Ticket | None = None  # set once the request is admitted (counts against limits)
    session: str | None = None  # the sticky-session key, when there was a choice of accounts
    client: str | None = None  # the client type, when the client filter or a client list asked
    bound_account: int | None = None
    slots: list[tuple[str, str]] = field(default_factory=list)
    watch: DisconnectWatch | None = None
    responded: bool = False  # the status line has gone to the client
    conversation: Conversation | None = None  # a WebSocket turn's socket (`socket_bridge.py`)
    recorded: bool = False  # its request-log row is queued

    async def send(self, message: dict[str, Any]) -> None:
        self.responded = True
        await self._send(message)

    def stop_watching(self) -> None:
        """The upstream answer is in hand: a disconnect can no longer lose it."""
        if self.watch is not None:
            self.watch.stop()


def platform_of(model: str, book: PriceBook) -> str | None:
    known = book.lookup(model)
    if known is not None:
        return known.platform
    lowered = model.lower()
    for prefix, platform in _PREFIX_PLATFORMS:
        if lowered.startswith(prefix):
            return platform
    return None


def split_forced_type(model: str) -> tuple[str | None, str]:
    """`"claude-official,claude-sonnet-4-5"` forces the account type."""
    head, sep, rest = model.partition(",")
    if sep and head.strip() in ACCOUNT_TYPES and rest.strip():
        return head.strip(), rest.strip()
    return None, model


class Gateway:
    def __init__(self, services: Services, recorder: UsageRecorder) -> None:
        self.services = services
        self.configs = services.configs
        self.pool = AccountPool(services.db, services.state, services.secrets)
        self.keys = KeyCache(services.db, services.state)
        self.limits = Limits(services.state)
        self.admission = Admission(services.state, services.db, self.slot_lease)
        self.recorder = recorder
        self.prices = PriceBook()
        self.client_filter = ClientFilter()
        self._snapshots_version = -2  # the pool version the prices and the client filter were read at
        self._snapshots_loading: asyncio.Future[None] | None = None  # the one read under way
        self._instance = secrets.token_hex(6)
        self._sequence = 0
        self.relay = Relay(self, StickySessions(services.state), random.Random())
        self.response_owners = ResponseOwners(services.state)
        self.metrics = Metrics()
        self.metrics.watch(functools.partial(scrape_figures, self.pool, services.state))
        recorder.report_to(self.metrics)
        self.tokens = TokenStore(services, self.pool, self.relay.clients, self.metrics)
        self.quotas = QuotaBoard(services.state)
        self.health = HealthChecker(services, self.pool, self.tokens, self.relay.clients)

    def _request_id(self) -> str:
        """Unique across instances (random prefix) without a system call per request."""
        self._sequence += 1
        return f"{self._instance}{self._sequence:012x}"

    async def start(self) -> None:
        await self.pool.reload()
        await self._refresh_snapshots()
        self.recorder.start()
        self.metrics.start()
        self.tokens.start()
        self.health.start()

    async def close(self) -> None:
        await self.health.close()
        await self.tokens.close()
        await self.quotas.drain()
        await self.recorder.stop()
        self.metrics.stop()
        await self.relay.clients.close()

    async def _refresh_snapshots(self) -> None:
        """The model prices and the client filter, read again when an admin change moved the pool version.

        One read per change, shared: the requests that arrive while it runs wait for it rather than
        each reading the tables again (hundreds of requests in flight would otherwise each take a
        database connection at the same moment, and exhaust the pool and the server's limit)."""
        while self._snapshots_version != self.pool.version:
            if self._snapshots_loading is None:
                self._snapshots_loading = asyncio.ensure_future(self._load_snapshots(self.pool.version))
                self._snapshots_loading.add_done_callback(self._snapshots_loaded)
            await asyncio.shield(self._snapshots_loading)

    async def _load_snapshots(self, version: int) -> None:
        self.prices = await PriceBook.load(self.services.db)
        async with self.services.db.session() as session:
            self.client_filter = build_filter(*await client_filter_store.load_all(session))
        self._snapshots_version = version

    def _snapshots_loaded(self, _future: asyncio.Future[None]) -> None:
        self._snapshots_loading = None

    # -- entry point ---------------------------------------------------------------------------

    async def handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        serve: Callable[[Call], Awaitable[None]] | None = None,
    ) -> None:
        """One request; `serve` replaces the HTTP steps for a request another transport parsed (a
        WebSocket handshake or turn, `websocket.py`), with the same one-row guarantee."""
        call = Call(scope, receive, send, self._request_id(), time.perf_counter())
        log_context.request_id.set(call.request_id)  # on every log line of this request (observe/)
        metrics = self.metrics
        metrics.in_flight += 1
        try:
            await (serve or self._handle)(call)
        except GatewayError as exc:
            self._record_refusal(call, exc)
            if not call.responded:
                headers = JSON_HEADERS + [(k.encode(), v.encode()) for k, v in exc.headers.items()]
                await send_whole(
                    send,
                    exc.status,
                    headers,
                    error_body(self._family(call), exc.status, exc.message, exc.code),
                )
        except Exception as exc:
            # A bug or an outage (database, Redis): still one row, and the client's own error shape.
            log.exception("proxy request %s %s failed", scope["method"], scope["path"])
            self._record_refusal(call, GatewayError(500, f"internal error: {type(exc).__name__}"))
            if not call.responded:
                await send_whole(
                    send, 500, list(JSON_HEADERS), error_body(self._family(call), 500, "internal error")
                )
        finally:
            metrics.in_flight -= 1

    @staticmethod
    def _family(call: Call) -> str:
        return call.endpoint.family if call.endpoint else family_of_path(call.scope["path"])

    async def _handle(self, call: Call) -> None:
        scope = call.scope
        endpoint = self._route(call)
        headers = call.headers
        query = scope.get("query_string", b"").decode("latin-1")
        query_key = None
        if endpoint.family == GEMINI and "key=" in query:
            params = parse_qsl(query, keep_blank_values=True)
            query_key = next((v for k, v in params if k == "key"), None)
            query = urlencode([(k, v) for k, v in params if k != "key"])  # never forward the relay key
        call.query = query
        caller = await self._caller(call, key_from_headers(headers, query_key))
        if scope["method"] not in endpoint.methods:
            raise GatewayError(405, f"use {' or '.join(endpoint.methods)} for this endpoint")
        if endpoint.kind == "models":
            call.client = check_client(self.client_filter, caller, headers, scope["path"], None)
            models = model_list(endpoint.family, caller, self.prices)
            await send_whole(call.send, 200, list(JSON_HEADERS), models)
            self._record(call, self._event(call, "success", 200, ""))
            return
        if endpoint.kind in STORED_KINDS:  # a call on one stored response: no body, no model
            call.client = check_client(self.client_filter, caller, headers, scope["path"], None)
            await serve_stored(self, call, caller)
            return
        call.body = await read_request_body(call.receive, headers.get(b"content-encoding"))
        try:
            payload = orjson.loads(call.body) if call.body else {}
        except orjson.JSONDecodeError:
            raise GatewayError(400, "request body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise GatewayError(400, "request body must be a JSON object")
        call.payload = payload
        conversation = (
            None if endpoint.kind in BODYLESS_KINDS or endpoint.action == "countTokens" else payload
        )
        call.client = check_client(self.client_filter, caller, headers, scope["path"], conversation)
        await self._serve(call, caller)

    def _route(self, call: Call) -> Endpoint:
        call.headers = dict(call.scope["headers"])
        endpoint = call.endpoint = match(call.scope["path"])
        if endpoint is None:
            raise GatewayError(404, f"unknown endpoint {call.scope['path']}")
        return endpoint

    async def _caller(self, call: Call, raw_key: str | None) -> Caller:
        """The key's caller, checked (key, user, expiry), with the pool and the snapshots fresh."""
        if not raw_key:
            raise GatewayError(401, e.MISSING_KEY)
        caller = call.caller = await self.keys.resolve(raw_key)
        if caller is None:
            raise GatewayError(401, e.INVALID_KEY)
        check_caller(caller, time.time())
        await self.pool.fresh()
        await self._refresh_snapshots()
        return caller

    async def authenticate(self, call: Call) -> tuple[str, Caller]:
        """The key checks of a request without a body (a WebSocket handshake): the raw key and its caller."""
        self._route(call)
        raw_key = key_from_headers(call.headers, None)
        caller = await self._caller(call, raw_key)
        call.client = check_client(self.client_filter, caller, call.headers, call.scope["path"], None)
        return raw_key or "", caller

    async def serve_parsed(
        self, call: Call, raw_key: str, client: str | None, payload: dict[str, Any]
    ) -> None:
        """A request whose body its transport parsed (a WebSocket turn): the checks from the key on, as
        for HTTP (the key is looked up again: it may have been disabled since the handshake)."""
        self._route(call)
        call.payload = payload
        call.body = orjson.dumps(payload)
        caller = await self._caller(call, raw_key)
        call.client = client
        await self._serve(call, caller)

    # -- one request ---------------------------------------------------------------------------

    def _plan(self, call: Call) -> Plan:
        endpoint = call.endpoint
        model = endpoint.model if endpoint.kind == "gemini_native" else call.payload.get("model")
        if endpoint.kind == "responses" and not model:
            model = RESPONSES_DEFAULT_MODEL  # the Responses route lets clients omit it
        if not isinstance(model, str) or not model.strip():
            raise GatewayError(400, "model: field required")
        forced_type, model = split_forced_type(model.strip())
        platform = platform_of(model, self.prices)
        client = "gemini_chat" if endpoint.kind == "gemini_chat" else endpoint.family
        families, fallbacks, last_resort = _routing(endpoint.family, platform, forced_type)
        platform = platform or _ROUTE_PLATFORM[endpoint.family]
        plan = Plan(
            families, client, model, forced_type, platform, None, fallbacks=fallbacks, last_resort=last_resort
        )
        price = self.prices.lookup(model)
        if price is not None and not price.enabled:
            raise GatewayError(403, e.MODEL_DISABLED)
        if price is None:
            if not self.configs.get("allow_unknown_models"):
                raise GatewayError(403, e.MODEL_UNKNOWN)
            price = self.prices.fallback(plan.platform)
            plan.flags.append("unknown_model")
        plan.price = price
        return plan

    async def _serve(self, call: Call, caller: Caller) -> None:
        plan = call.plan = self._plan(call)
        account_types = _account_types(plan.forced_type, plan.families, plan.fallbacks, plan.last_resort)
        if caller.allowed_platforms is not None and not caller.allowed_platforms & account_types:
            raise GatewayError(403, e.PLATFORM_FORBIDDEN)
        check_model_allowed(caller, plan.model)
        call.stream = self._wants_stream(call)
        if call.endpoint.kind in FREE_KINDS or call.endpoint.action == "countTokens":
            # Free to call: neither limited nor billed, but logged like any request.
            try:
                outcome = await self._relay(call, plan)
                outcome.usage = None
                self._record_outcome(call, plan, outcome, None)
                await self.relay.settle(call, outcome)
            finally:
                await self._release_slots(call)
            return
        rate = self._price_rate(caller)
        request = Request(
            plan.model,
            account_types,
            payload=call.payload,
            body_size=len(call.body),
            price=plan.price,
            rate=rate,
            client=call.client,
        )
        require_package = bool(self.configs.get("require_package"))
        ticket = await self.admission.admit(caller, call.request_id, request, require_package=require_package)
        call.ticket = ticket
        try:
            async with ticket:
                outcome = await self._relay(call, plan)
                # Logged first, before anything else waits: a crash from here on cannot lose the row.
                self._bill(call, plan, outcome, ticket, rate)
                await self.relay.settle(call, outcome)
                if outcome.response_id:
                    await remember_made(self, call, outcome)
        finally:
            await self._release_slots(call)

    async def _release_slots(self, call: Call) -> None:
        """The user's slot and the serving account's, once the request is logged (or failed)."""
        while call.slots:
            await self.limits.release_slot(*call.slots.pop())

    async def _relay(self, call: Call, plan: Plan) -> Outcome:
        """The attempts, cancelled at once if the client goes away before the answer is in hand."""
        task = asyncio.current_task()
        assert task is not None
        watch = call.watch = DisconnectWatch(task, call.scope, call.receive)
        try:
            return await self.relay.run(call, plan)
        except asyncio.CancelledError:
            if not watch.gone:
                raise
            task.uncancel()
            return Outcome(
                "client_gone", CLIENT_GONE_STATUS, error="client closed the connection before the answer"
            )
        finally:
            watch.stop()

    def _wants_stream(self, call: Call) -> bool:
        endpoint = call.endpoint
        if endpoint.kind == "gemini_native":
            return endpoint.action == "streamGenerateContent"
        stream = call.payload.get("stream")
        if stream is not None and not isinstance(stream, bool):
            raise GatewayError(400, "stream: must be a boolean")
        if stream is None and endpoint.kind == "responses":
            # The route streams by default, except for a client that asks for JSON: the official
            # SDKs send `Accept: application/json` on a `responses.create` without `stream`.
            accept = call.headers.get(b"accept", b"").lower()
            return b"application/json" not in accept or b"text/event-stream" in accept
        return stream is True

    def slot_lease(self) -> float:
        return float(self.configs.get("timeout")) + 60.0

    async def renew_leases(self, call: Call) -> None:
        """Keep a long answer's slots and holds from running out while it streams."""
        ticket = call.ticket
        slots = [key for key, _ in call.slots] + (ticket.slots if ticket else [])
        budgets = ticket.budgets if ticket else []
        if slots or budgets:
            await self.limits.renew(call.request_id, self.slot_lease(), slots=slots, budgets=budgets)

    # -- billing -------------------------------------------------------------------------------

    def _price_rate(self, caller: Caller) -> float:
        return effective_rate(
            key_rate=caller.key_price_rate,
            user_rate=caller.user_price_rate,
            global_rate=float(self.configs.get("global_price_rate")),
        )

    def _bill(self, call: Call, plan: Plan, outcome: Outcome, ticket: Ticket, rate: float) -> None:
        cost = None
        if outcome.usage is not None and plan.price is not None:
            price = self.prices.lookup(outcome.upstream_model) or plan.price
            cost = cost_of(outcome.usage, price, rate)
        self._record_outcome(call, plan, outcome, cost)
        if outcome.account_id is not None:  # served (an account took it): counts and costs
            ticket.bill(tokens=outcome.usage.total if outcome.usage else 0, cost=cost.total if cost else 0.0)

    def _record_outcome(self, call: Call, plan: Plan, outcome: Outcome, cost: Cost | None) -> None:
        event = self._event(call, outcome.status, outcome.status_code, outcome.error)
        event.account_id = outcome.account_id
        event.platform = outcome.account_type or event.platform
        event.upstream_model = outcome.upstream_model
        event.usage = outcome.usage
        event.cost = cost
        # At least 1 ms once a first byte went out: 0 means none (a sub-millisecond one is not "none").
        event.first_byte_ms = max(1, round(outcome.first_byte * 1000)) if outcome.first_byte else 0
        event.retries = outcome.retries
        event.flags = plan.flags + outcome.flags
        self._record(call, event)

    def _record_refusal(self, call: Call, exc: GatewayError) -> None:
        """Refused and failed requests are logged too (never billed), so admins see who hits what.

        A request that got past admission and then failed (or hit a bug) is an `error`; one
        refused before it counted against any limit is `rejected`.
        """
        status = "error" if call.ticket is not None or exc.status == 500 else "rejected"
        message = f"{exc.message} ({exc.detail})" if exc.detail else exc.message
        self._record(call, self._event(call, status, exc.status, message))

    def _record(self, call: Call, event: UsageEvent) -> None:
        """Queue the request's one row (a second attempt to log the same request is a bug)."""
        if call.recorded:
            log.error("request %s was about to be logged twice", call.request_id)
            return
        call.recorded = True
        self.recorder.record(event)
        endpoint = call.endpoint
        route = f"{endpoint.family}.{endpoint.kind}" if endpoint else "unknown"
        self.metrics.request_done(route, event, known_model=event.model in self.prices.by_id)

    def _event(self, call: Call, status: str, status_code: int, error: str) -> UsageEvent:
        caller, plan, endpoint = call.caller, call.plan, call.endpoint
        if plan is not None:
            model = plan.model
        else:
            raw_model = call.payload.get("model")
            model = raw_model if isinstance(raw_model, str) else endpoint.model if endpoint else ""
        return UsageEvent(
            request_id=call.request_id,
            user_id=caller.user_id if caller else None,
            api_key_id=caller.key_id if caller else None,
            account_id=None,
            platform=plan.platform if plan else "",
            model=model,
            upstream_model="",
            path=call.scope["path"],
            stream=call.stream,
            status=status,
            status_code=status_code,
            usage=None,
            cost=None,
            duration_ms=int((time.perf_counter() - call.started) * 1000),
            first_byte_ms=0,
            created_at=datetime.now(UTC),
            method=call.scope["method"][:8],
            client_ip=self._client_ip(call),
            user_agent=logged_value(call.headers.get(b"user-agent", b"")),
            session_hash=hashlib.sha256(call.session.encode()).hexdigest()[:16] if call.session else "",
            flags=list(plan.flags) if plan else [],
            error_message=mask_text(error),
            request_headers=logged_headers(call.headers),
            request_body=captured_body(call.body, self.configs),
            user_package_id=call.ticket.package_id if call.ticket else None,
            client_type=call.client or "",
        )

    def _client_ip(self, call: Call) -> str:
        forwarded = call.headers.get(b"x-forwarded-for")
        real = call.headers.get(b"x-real-ip")
        return client_address(
            (call.scope.get("client") or ("", 0))[0],
            forwarded.decode("latin-1") if forwarded else None,
            real.decode("latin-1") if real else None,
            trust_proxy=self.services.settings.trust_proxy_headers,
        )
