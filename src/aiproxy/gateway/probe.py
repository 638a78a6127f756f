"""One real upstream call through a chosen account, for the admin's "test this account" button.

It goes through the same URL building, credentials and outbound proxy as relayed traffic,
but is neither limited nor billed, and never changes the account's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson

from ..errors import BadRequest, NotFound
from ..security.masking import mask_text
from .http_client import UpstreamError
from .pool import AccountPool
from .providers import UpstreamRequest, provider_for
from .tokens import TokenStore
from .upstream import UpstreamClients
from .usage import usage_from_body

PROBE_TIMEOUT = 60.0


async def probe_account(
    pool: AccountPool,
    clients: UpstreamClients,
    tokens: TokenStore,
    *,
    account_id: int,
    model: str | None,
    message: str,
    configs: Any = None,
) -> dict[str, Any]:
    await pool.fresh()
    account = pool.accounts.get(account_id)
    if account is None:
        raise NotFound("account not found or disabled")
    if account.oauth:
        ready = await tokens.usable(account)
        if ready is None:
            raise BadRequest(f"account {account.name}: its OAuth login has expired; log in again")
        account = ready
    provider = provider_for(account, account.family)
    model = model or provider.default_probe_model
    upstream_model = account.upstream_model(model)
    if upstream_model is None:
        raise BadRequest(f"model: account {account.name} does not serve {model}")
    request = UpstreamRequest(
        model=upstream_model, client_headers={b"content-type": b"application/json"}, configs=configs
    )
    payload = orjson.loads(provider.probe_body(upstream_model, message))
    body = provider.encode(account, request, payload, None)  # shaped like relayed traffic
    call = provider.build(account, request, body)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            response = await clients.http.request(
                "POST",
                call.url,
                headers=call.headers,
                body=body,
                proxy_url=account.proxy_url,
                read_timeout=PROBE_TIMEOUT,
            )
            try:
                body = await response.read()
            finally:
                response.release()
            status, headers = response.status, response.headers
    except (UpstreamError, TimeoutError) as exc:
        reason = str(exc) or f"no whole answer within {PROBE_TIMEOUT:g} s"
        return {
            "success": False,
            "account_id": account_id,
            "model": upstream_model,
            "status_code": 0,
            "latency_ms": int((time.perf_counter() - started) * 1000),
            "message": mask_text(f"{type(exc).__name__}: {reason}"),
        }
    latency = int((time.perf_counter() - started) * 1000)
    # A success status can still be a refusal (a subscription out of quota: Claude's "rejected").
    answered = status < 400 and not provider.rejected(headers)
    if answered:
        with contextlib.suppress(ValueError):  # unreadable: shown as the upstream sent it
            body = provider.decode_answer(request, body)  # unwrapped, or gathered from a stream
    usage = usage_from_body(provider.wire, body) if answered else None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    resets_at = None if answered else provider.resets_at(headers, body, time.time())
    return {
        "success": answered,
        "account_id": account_id,
        "model": upstream_model,
        "status_code": status,
        "latency_ms": latency,
        "reply": provider.reply_text(data) if answered else "",
        "message": "" if answered else _refusal(status, body),
        "resets_at": int(resets_at) if resets_at else None,
        "usage": None
        if usage is None
        else {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_creation_tokens": usage.cache_creation_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
        },
    }


def _refusal(status: int, body: bytes) -> str:
    text = mask_text(body[:1000].decode("utf-8", "replace"))
    if status < 400:
        return f"the upstream refused the request: its quota is used up ({text[:200]})"
    return text
