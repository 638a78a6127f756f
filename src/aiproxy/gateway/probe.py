"""One real upstream call through a chosen account, for the admin's "test this account" button.

It goes through the same URL building, credentials and outbound proxy as relayed traffic,
but is neither limited nor billed, and never changes the account's status.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import orjson

from ..errors import BadRequest, NotFound
from .errors import CLAUDE, GEMINI, RESPONSES
from .pool import AccountPool, PoolAccount
from .upstream import UpstreamClients, build_call
from .usage import usage_from_body

DEFAULT_MODELS = {CLAUDE: "claude-haiku-4-5", GEMINI: "gemini-2.5-flash", RESPONSES: "gpt-5-codex"}
PROBE_TIMEOUT = 60.0


def _probe_body(account: PoolAccount, model: str, message: str) -> bytes:
    if account.family == CLAUDE:
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": message}],
        }
    elif account.family == GEMINI:
        body = {
            "contents": [{"role": "user", "parts": [{"text": message}]}],
            "generationConfig": {"maxOutputTokens": 64},
        }
    elif account.family == RESPONSES:
        body = {"model": model, "input": message, "stream": False}
    else:
        body = {"model": model, "messages": [{"role": "user", "content": message}], "max_tokens": 64}
    return orjson.dumps(body)


def _reply_text(family: str, data: Any) -> str:
    try:
        if family == CLAUDE:
            return "".join(b.get("text", "") for b in data["content"] if b.get("type") == "text")
        if family == GEMINI:
            return "".join(p.get("text", "") for p in data["candidates"][0]["content"]["parts"])
        if family == RESPONSES:
            return "".join(
                c.get("text", "")
                for item in data["output"]
                if item.get("type") == "message"
                for c in item["content"]
            )
        return str(data["choices"][0]["message"]["content"] or "")
    except (KeyError, IndexError, TypeError, AttributeError):
        return ""


async def probe_account(
    pool: AccountPool, clients: UpstreamClients, *, account_id: int, model: str | None, message: str
) -> dict[str, Any]:
    await pool.fresh()
    account = pool.accounts.get(account_id)
    if account is None:
        raise NotFound("account not found or disabled")
    model = model or DEFAULT_MODELS.get(account.family, "gpt-4o-mini")
    upstream_model = account.upstream_model(model)
    if upstream_model is None:
        raise BadRequest(f"model: account {account.name} does not serve {model}")
    call = build_call(
        account, account.family, model=upstream_model, client_headers={b"content-type": b"application/json"}
    )
    session, proxy = await clients.for_proxy(account.proxy_url)
    started = time.perf_counter()
    try:
        async with session.post(
            call.url,
            data=_probe_body(account, upstream_model, message),
            headers=call.headers,
            proxy=proxy,
            timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT),
        ) as response:
            body = await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return {
            "success": False,
            "account_id": account_id,
            "model": upstream_model,
            "status_code": 0,
            "latency_ms": int((time.perf_counter() - started) * 1000),
            "message": f"{type(exc).__name__}: {exc}",
        }
    latency = int((time.perf_counter() - started) * 1000)
    usage = usage_from_body(account.family, body) if status < 400 else None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    return {
        "success": status < 400,
        "account_id": account_id,
        "model": upstream_model,
        "status_code": status,
        "latency_ms": latency,
        "reply": _reply_text(account.family, data) if status < 400 else "",
        "message": "" if status < 400 else body[:1000].decode("utf-8", "replace"),
        "usage": None
        if usage is None
        else {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_creation_tokens": usage.cache_creation_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
        },
    }
