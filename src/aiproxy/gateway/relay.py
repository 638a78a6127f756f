"""Attempts and failover: send the request to candidate accounts until one answers.

Switches happen only before the first byte reaches the client, at most `retry_count`
times, never twice to the same account. The error rules decide what an upstream error
means for the account (rate limited until its reset, overloaded for a short rest,
invalid, or nothing: a request-shaped error goes straight back to the client).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from .. import state_keys
from ..billing.pricing import Usage
from ..security.masking import mask_bytes, mask_text
from ..store.error_rules import classify_error
from . import errors as e
from .convert.compose import conversion
from .convert.estimate import estimate_tokens
from .convert.openai_claude import wants_stream_usage
from .convert.refusal import Unconvertible
from .convert.responses_to_chat import dropped_tools
from .errors import CLAUDE, GEMINI, OPENAI, RESPONSES, GatewayError, error_body
from .http_client import UpstreamError
from .pool import PoolAccount
from .providers import RESPONSES_INCAPABLE, Provider, UpstreamRequest, provider_for
from .response_owners import maker_first
from .routes import FREE_KINDS, UPSTREAM_SUBPATHS
from .scheduler import Candidate, StickySessions, candidates, session_key, weighted_order
from .streaming import AnswerUnreadable, UpstreamBroke, prepare_answer, relay_stream, send_answer
from .upstream import UpstreamClients

if TYPE_CHECKING:
    from .convert.compose import Conversion
    from .pipeline import Call, Gateway, Plan

ERROR_BODY_LIMIT = 64 * 1024
# Client protocol → the account families that speak it (whose requests need no conversion).
_HOME_FAMILIES = {
    CLAUDE: frozenset({CLAUDE}),
    OPENAI: frozenset({OPENAI}),
    RESPONSES: frozenset({RESPONSES, OPENAI}),
    GEMINI: frozenset({GEMINI}),
}


@dataclass(slots=True)
class Outcome:
    """What happened, for billing and the request log."""

    status: str  # success | truncated | client_gone | error
    status_code: int
    account_id: int | None = None
    account_type: str = ""
    upstream_model: str = ""
    usage: Usage | None = None
    first_byte: float = 0.0
    retries: int = 0
    error: str = ""
    response_id: str = ""  # the Responses API id of what was made (for calls on it later)
    flags: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Failure:
    status: int  # 0 = no usable HTTP answer (network, cut or unreadable body)
    body: bytes
    headers: dict[str, str]
    message: str  # masked: it is stored and may be shown
    resets_at: float | None = None  # when the upstream says a rate limit ends (epoch seconds)
    marked: bool = False  # the account's status was already changed for this failure


def network_failure(what: str, exc: BaseException | None = None) -> Failure:
    detail = f"{what}: {type(exc).__name__}: {exc}" if exc is not None else what
    return Failure(0, b"", {}, mask_text(detail[:500]))


def _is_json_object(body: bytes) -> bool:
    if not body.lstrip().startswith(b"{"):
        return False
    try:
        return isinstance(orjson.loads(body), dict)
    except orjson.JSONDecodeError:
        return False


class Relay:
    def __init__(self, gateway: Gateway, sticky: StickySessions, rng: random.Random) -> None:
        self.gateway = gateway
        self.sticky = sticky
        self.rng = rng
        self.clients = UpstreamClients()

    async def _ordered(self, call: Call, plan: Plan) -> list[Candidate]:
        pool = self.gateway.pool
        while True:
            found = candidates(
                pool,
                families=plan.families,
                forced_type=plan.forced_type,
                allowed_types=call.caller.allowed_platforms,
                model=plan.model,
                group_id=call.caller.account_group_id,
                # Azure deployments speak Chat Completions only.
                excluded_types=RESPONSES_INCAPABLE if call.endpoint.family == RESPONSES else frozenset(),
            )
            if found or not plan.fallbacks:
                break
            # No account of the planned families can take it: the next families (served converted).
            plan.families, plan.fallbacks = plan.fallbacks[0], plan.fallbacks[1:]
        ordered = weighted_order(found, self.rng)
        if call.conversation is not None:  # a WebSocket turn: the socket's account, once it has one
            ordered = call.conversation.narrow(ordered)
        if len(ordered) > 1:  # with one candidate there is nothing to stick to
            call.session = session_key(call.headers, call.payload)
            if call.session:
                call.bound_account = await self.sticky.get(call.caller.key_id, call.session)
                if call.bound_account is not None:
                    ordered.sort(key=lambda c: c.account.id != call.bound_account)  # stable: bound one first
            if call.endpoint.family == RESPONSES and "previous_response_id" in call.payload:
                await maker_first(self.gateway, call, ordered)
        return ordered

    async def run(self, call: Call, plan: Plan) -> Outcome:
        ordered = await self._ordered(call, plan)
        if not ordered:
            raise GatewayError(503, e.NO_ACCOUNT)
        counting = call.endpoint.kind in FREE_KINDS or call.endpoint.action == "countTokens"
        if counting and self._converted(call, ordered[0]) is not None:
            return await self._estimate_count(call)
        if call.endpoint.kind == "compact" and self._converted(call, ordered[0]) is not None:
            # A compaction is the vendor's own opaque item: only a Responses API upstream makes one.
            message = f"responses/compact: model {plan.model} is served by an account that cannot compact"
            raise GatewayError(400, message, code="unsupported_parameter")
        if not counting:
            self._convert_requests(call, plan, ordered)
        switches_allowed = int(self.gateway.configs.get("retry_count"))
        last: Failure | None = None
        last_account: PoolAccount | None = None
        tried = 0
        lapsed = 0  # candidates skipped because their OAuth login lapsed (not because they were busy)
        limits = self.gateway.limits
        for candidate in ordered:
            if tried > switches_allowed:
                break
            account = candidate.account
            slot = state_keys.account_slots(account.id)
            if account.max_concurrency > 0 and not await limits.take_account_slot(
                slot, call.request_id, account.max_concurrency, self.gateway.slot_lease()
            ):
                continue  # busy: the next candidate, without counting a switch
            held = (slot, call.request_id) if account.max_concurrency > 0 else None
            if held is not None:
                call.slots.append(held)
            try:
                result = await self._try_account(call, plan, candidate)
            except BaseException:
                await self._free(call, held)
                raise
            if result is None:  # its OAuth login has lapsed: the next candidate, not a switch
                await self._free(call, held)
                lapsed += 1
                continue
            if isinstance(result, Outcome):
                # The slot stays held until the pipeline has logged the request (see `settle`).
                result.retries = tried
                return result
            await self._free(call, held)
            tried += 1
            last, last_account = result, account
            if not await self._should_switch(candidate, result):
                break
        if last is None:
            # Every candidate was busy (or shared state is down), or its login has just lapsed.
            raise GatewayError(503, e.NO_ACCOUNT) if lapsed == len(ordered) else limits.no_free_account()
        outcome = await self._give_up(call, plan, last, tried)
        if last_account is not None:
            outcome.account_id, outcome.account_type = last_account.id, last_account.type
        return outcome

    @staticmethod
    def _converted(call: Call, candidate: Candidate) -> Conversion | None:
        """The translators for serving the client from this candidate (None: its own protocol)."""
        wire = provider_for(candidate.account, call.endpoint.family).wire
        return conversion(call.plan.client, wire)

    def _convert_requests(self, call: Call, plan: Plan, ordered: list[Candidate]) -> None:
        """The body each upstream protocol among the candidates needs, made once before any attempt:
        what one cannot express is the client's 400, before any account is asked."""
        if plan.client in _HOME_FAMILIES and set(plan.families) <= _HOME_FAMILIES[plan.client]:
            return  # served in the client's own protocol: nothing to convert, nothing to look at
        source = call.payload
        if call.conversation is not None:
            # A WebSocket turn served in another protocol goes over HTTP: its history written out.
            source = call.conversation.bridged(source)
        for candidate in ordered:
            found = self._converted(call, candidate)
            if found is None or not found.request_steps or found.upstream in call.converted:
                continue
            try:
                converted = found.request(source, model=plan.model, stream=call.stream)
            except Unconvertible as exc:
                raise GatewayError(400, str(exc), code="unsupported_parameter") from None
            call.converted[found.upstream] = converted
            if plan.client == RESPONSES and dropped_tools(call.payload) and "tools_dropped" not in plan.flags:
                plan.flags.append("tools_dropped")  # hosted web search left out (see responses_to_chat.py)

    async def _estimate_count(self, call: Call) -> Outcome:
        """A count no account of the client's family can give: estimated here (convert/estimate.py)."""
        tokens = estimate_tokens(call.payload)
        family = call.endpoint.family
        answer: dict[str, Any] = (
            {"input_tokens": tokens}
            if family == CLAUDE
            else {"object": "response.input_tokens", "input_tokens": tokens}
            if family == RESPONSES
            else {"totalTokens": tokens}
        )
        body = orjson.dumps(answer)
        call.stop_watching()
        outcome = Outcome("success", 200, flags=["estimated"])
        await call.send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await call.send({"type": "http.response.body", "body": body})
        return outcome

    async def _free(self, call: Call, held: tuple[str, str] | None) -> None:
        if held is not None:
            call.slots.remove(held)
            await self.gateway.limits.release_slot(*held)

    async def settle(self, call: Call, outcome: Outcome) -> None:
        """After the request is logged: remember the session's account, show an ended cooldown."""
        if outcome.status == "error" or outcome.account_id is None:
            return
        await self._remember(call, outcome.account_id)
        account = self.gateway.pool.accounts.get(outcome.account_id)
        if account is not None and account.status != "valid":  # its cooldown ended by itself
            await self.gateway.pool.recover(account.id)

    async def _remember(self, call: Call, account_id: int) -> None:
        if call.session:
            ttl = float(self.gateway.configs.get("session_ttl")) * 60
            if call.bound_account == account_id:
                await self.sticky.touch(call.caller.key_id, call.session, ttl)  # renewed on use
            else:
                await self.sticky.bind(call.caller.key_id, call.session, account_id, ttl)

    # -- one attempt ---------------------------------------------------------------------------

    def _upstream_body(
        self, call: Call, plan: Plan, provider: Provider, account: PoolAccount, request: UpstreamRequest
    ) -> bytes:
        found = call.conversion
        if found is None or not found.request_steps:
            return provider.encode(account, request, call.payload, call.body)
        return provider.encode(account, request, call.converted[found.upstream], None)  # made in `run`

    async def _try_account(self, call: Call, plan: Plan, candidate: Candidate) -> Outcome | Failure | None:
        """One attempt; for an OAuth account, with a live token, and once more after a 401 refresh."""
        account = candidate.account
        if not account.oauth:
            return await self._attempt(call, plan, candidate, account)
        tokens = self.gateway.tokens
        ready = await tokens.usable(account)
        if ready is None:
            return None
        result = await self._attempt(call, plan, candidate, ready)
        if isinstance(result, Failure) and result.status == 401:
            renewal = await tokens.after_rejection(ready)
            if renewal.account is not None:  # the same account again, before any failover
                result = await self._attempt(call, plan, candidate, renewal.account)
            elif renewal.expired:
                result.marked = True  # token_expired already: the 401 rule must not say "invalid"
            elif renewal.retry_at is not None:
                # The token endpoint is failing for now: the account rests until a refresh may be
                # tried again, rather than being called invalid by the 401 rule.
                reason = f"OAuth token refused; its refresh is postponed: {renewal.reason}"
                mark = self.gateway.pool.mark(
                    account.id, "rate_limited", until=renewal.retry_at, reason=reason
                )
                await asyncio.shield(mark)
                result.marked = True
        return result

    async def _attempt(
        self, call: Call, plan: Plan, candidate: Candidate, account: PoolAccount
    ) -> Outcome | Failure:
        endpoint = call.endpoint
        query = call.query
        provider = provider_for(account, endpoint.family)
        found = call.conversion = conversion(plan.client, provider.wire)
        if found is not None and provider.wire == GEMINI and call.stream:
            query = "alt=sse"  # a converted Gemini stream is read as SSE
        request = UpstreamRequest(
            model=candidate.upstream_model,
            client_headers=call.headers,
            query=query,
            gemini_action=endpoint.action or ("streamGenerateContent" if call.stream else "generateContent"),
            gemini_version=endpoint.version,
            count_tokens=endpoint.kind == "count_tokens",
            subpath=UPSTREAM_SUBPATHS.get(endpoint.kind, ""),
            stream=call.stream,
            usage_requested=call.stream and endpoint.family == OPENAI and wants_stream_usage(call.payload),
            configs=self.gateway.configs,
        )
        refusal = provider.unsupported(account, request)
        if refusal is not None:  # another account may have the call: fail over without marking this one
            body = error_body(endpoint.family, 400, refusal)
            return Failure(400, body, {}, refusal, marked=True)
        if call.conversation is not None:
            # A WebSocket turn: over the vendor's socket when it can, else bridged to HTTP below.
            answered = await call.conversation.attempt(self, call, candidate, account, provider, request)
            if answered is not None:
                return answered
        body = self._upstream_body(call, plan, provider, account, request)
        upstream = provider.build(account, request, body)
        read_timeout = float(self.gateway.configs.get("timeout"))
        metrics = self.gateway.metrics
        sent = time.perf_counter()
        try:
            response = await self.clients.http.request(
                "POST",
                upstream.url,
                headers=upstream.headers,
                body=body,
                proxy_url=account.proxy_url,
                read_timeout=read_timeout,
            )
        except UpstreamError as exc:
            metrics.upstream_answered(account.type, "network_error", time.perf_counter() - sent)
            return network_failure("upstream request failed", exc)
        outcome_class = "ok" if response.status < 400 else f"{response.status // 100}xx"
        metrics.upstream_answered(account.type, outcome_class, time.perf_counter() - sent)
        try:
            headers = response.headers
            if response.status >= 400 or provider.rejected(headers):
                try:
                    raw = await response.read(ERROR_BODY_LIMIT)
                except UpstreamError:
                    raw = b""
                error = provider.error_in_wire(response.status, headers, raw) if raw else raw
                self._note_quota(provider, account, response.status, headers, error)
                message = mask_text(error[:500].decode("utf-8", "replace"))
                resets_at = provider.resets_at(headers, error, time.time())
                return Failure(response.status, error, headers, message, resets_at)
            self._note_quota(provider, account, response.status, headers, None)
            outcome = Outcome("success", response.status, account.id, account.type, candidate.upstream_model)
            if call.stream:
                try:
                    await relay_stream(
                        call, plan, provider, request, response, headers, outcome, self.gateway
                    )
                except UpstreamBroke as exc:  # nothing reached the client yet: another account may serve
                    return network_failure("upstream stream broke before any byte", exc.__cause__ or exc)
                return outcome
            # The whole answer is read before anything is sent, so a cut body fails over too.
            try:
                body = await response.read()
            except UpstreamError as exc:
                return network_failure("upstream answer broke", exc)
            try:
                answer = prepare_answer(call, plan, provider, request, response.header_list, body, outcome)
            except AnswerUnreadable as exc:
                return network_failure(f"upstream answer unreadable: {exc}")
            call.stop_watching()
            await send_answer(call, response.status, answer, outcome)
            return outcome
        finally:
            response.release()

    def _note_quota(
        self,
        provider: Provider,
        account: PoolAccount,
        status: int,
        headers: dict[str, str],
        error: bytes | None,
    ) -> None:
        board = self.gateway.quotas
        if error is None and not board.due(account.id):
            return  # a success a few seconds after the last snapshot: nothing worth parsing
        snapshot = provider.quota(status, headers, error)
        if snapshot is not None:
            board.note(account.id, snapshot)

    # -- failures ------------------------------------------------------------------------------

    async def _should_switch(self, candidate: Candidate, failure: Failure) -> bool:
        """Mark the account as the error rules say; True when another account may succeed."""
        if failure.status == 0 or failure.marked:
            return True  # connection refused, reset, timeout: try elsewhere
        pool = self.gateway.pool
        text = failure.body.decode("utf-8", "replace")
        rejected = failure.status < 400
        rule = classify_error(pool.error_rules, 429 if rejected else failure.status, text)
        target = rule.target_status if rule else None
        if target == "valid":
            return False  # the request's own problem: the account is fine, the client gets the error
        if target is None:
            return failure.status >= 500
        now = time.time()
        configs = self.gateway.configs
        until: float | None = None
        if target == "rate_limited":
            rest = (
                rule.cooldown_seconds
                if rule and rule.cooldown_seconds
                else configs.get("rate_limit_cooldown")
            )
            until = failure.resets_at or now + float(rest)
        elif target == "overloaded":
            rest = (
                rule.cooldown_seconds if rule and rule.cooldown_seconds else configs.get("overload_cooldown")
            )
            until = now + float(rest)
        reason = f"HTTP {failure.status}: {failure.message}"
        # Shielded: a client leaving mid-failover must not leave the mark half written.
        await asyncio.shield(pool.mark(candidate.account.id, target, until=until, reason=reason))
        return True

    async def _give_up(self, call: Call, plan: Plan, last: Failure, tried: int) -> Outcome:
        """Every attempt failed: the client gets the last upstream error (or a 502)."""
        call.stop_watching()  # the answer is decided: a disconnect now changes nothing
        family = call.endpoint.family
        outcome = Outcome("error", last.status or 502, retries=max(0, tried - 1), error=last.message)
        if last.status == 0:
            body, status = error_body(family, 502, e.UPSTREAM_FAILED), 502
        elif last.status < 400:  # only "rejected" 200s, on every account
            body, status = error_body(family, 429, e.RATE_LIMITED), 429
        else:
            status = last.status
            custom = self.gateway.pool.custom_message(status, last.body.decode("utf-8", "replace"))
            if custom is not None:
                body = error_body(family, status, custom)
            elif not _is_json_object(last.body):
                # An HTML page from a proxy, plain text, nothing: the client's SDK expects its own shape.
                body = error_body(family, status, last.message or f"upstream returned HTTP {status}")
            elif call.conversion is not None and call.conversion.error_steps:
                body = mask_bytes(call.conversion.error(status, last.body))  # in the client's protocol
            else:
                body = mask_bytes(last.body)  # the vendor's own error, as the client's SDK expects it
        outcome.status_code = status
        headers = [(b"content-type", b"application/json")]
        if "retry-after" in last.headers:
            headers.append((b"retry-after", last.headers["retry-after"].encode()))
        await call.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())],
            }
        )
        await call.send({"type": "http.response.body", "body": body})
        return outcome
