"""The OpenAI Responses API: openai-responses accounts (an API key, or Codex through a ChatGPT
subscription) and plain OpenAI accounts on that route.

A subscription account (OAuth) talks to the ChatGPT backend, which serves only what the
Codex CLI sends: a stream (`stream: true`) that is not stored (`store: false`), with
`instructions`, without the sampling fields it refuses, and with the ChatGPT account id as a
header. A client that did not ask for a stream gets the streamed answer gathered into the
Responses object it expects.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from ..convert.sse import SSEParser
from ..errors import RESPONSES
from ..pool import PoolAccount
from .base import _FORWARD_ANY, Provider, UpstreamRequest, retry_after, vendor_root

# Fields the ChatGPT backend refuses ("Unsupported parameter"): dropped from subscription calls.
CHATGPT_REFUSED_FIELDS = frozenset(
    {
        "previous_response_id",
        "generate",
        "prompt_cache_retention",
        "safety_identifier",
        "stream_options",
        "max_output_tokens",
        "temperature",
        "top_p",
        "user",
        "service_tier",
        "truncation",
    }
)
DEFAULT_ORIGINATOR = "codex_cli_rs"
COMPACT = "/compact"
_FINAL_EVENTS = (b"response.completed", b"response.incomplete", b"response.failed")


def chatgpt_account_id(account: PoolAccount) -> str:
    facts = account.extra.get("oauth")
    found = facts.get("chatgpt_account_id") if isinstance(facts, dict) else None
    return str(found or account.organization_id or "")


class ResponsesProvider(Provider):
    wire = RESPONSES
    forward = _FORWARD_ANY | {
        b"openai-beta",
        b"originator",
        b"version",
        b"session_id",
        b"session-id",
        b"thread-id",
        b"conversation_id",
        b"x-client-request-id",
    }
    forward_prefixes = (b"x-stainless-", b"x-codex-")
    default_probe_model = "gpt-5-codex"

    def target(self, account: PoolAccount, request: UpstreamRequest, headers: dict[str, str]) -> str:
        creds = account.credentials
        headers["authorization"] = f"Bearer {creds.get('api_key') or creds.get('access_token', '')}"
        if account.family == RESPONSES:
            url = account.base_url + "/responses"  # base_url is the prefix /responses is appended to
        else:
            url = vendor_root(account.base_url, "/v1") + "/v1/responses"
        if request.subpath:  # compaction, token counting, or a call on one stored response
            url += request.subpath
            if request.query:
                url += "?" + request.query
        if account.oauth or "chatgpt.com" in account.base_url:
            headers["openai-beta"] = "responses=experimental"
            chatgpt_id = chatgpt_account_id(account)
            if chatgpt_id:
                headers["chatgpt-account-id"] = chatgpt_id
        if account.oauth and not request.subpath:
            headers["accept"] = "text/event-stream"
            if "originator" not in headers:
                originator = request.configs.get("codex_originator") if request.configs else None
                headers["originator"] = str(originator or DEFAULT_ORIGINATOR)
        return url

    def encode(
        self, account: PoolAccount, request: UpstreamRequest, payload: dict[str, Any], raw: bytes | None
    ) -> bytes:
        if not account.oauth:
            if not request.stream or payload.get("stream") is True:
                return super().encode(account, request, payload, raw)
            # The route streams by default, the upstream does not: say so. Spliced in front rather
            # than re-encoded, which keeps the client's bytes (and any nesting orjson refuses).
            if "stream" in payload or not payload:  # `"stream": null`, or nothing to splice into
                return super().encode(account, request, {**payload, "stream": True}, None)
            body = super().encode(account, request, payload, raw)
            return b'{"stream":true,' + body.lstrip()[1:]
        body = {k: v for k, v in payload.items() if k not in CHATGPT_REFUSED_FIELDS}
        body["model"] = request.model
        if request.subpath == COMPACT:  # a whole JSON answer: neither streamed nor stored
            body.pop("stream", None)
            if not isinstance(body.get("instructions"), str):
                body["instructions"] = ""
            return orjson.dumps(body)
        body["stream"] = True  # the backend only streams; a non-stream client gets it gathered
        body["store"] = False
        if not isinstance(body.get("instructions"), str):
            body["instructions"] = ""
        return orjson.dumps(body)

    def unsupported(self, account: PoolAccount, request: UpstreamRequest) -> str | None:
        if account.oauth and request.subpath and request.subpath != COMPACT:
            return (
                "subscription (ChatGPT) accounts only create and compact responses; "
                "this call needs an API-key account"
            )
        return None

    def decode_answer(self, request: UpstreamRequest, body: bytes) -> bytes:
        head = body.lstrip()[:6]
        if not (head.startswith(b"event:") or head.startswith(b"data:")):
            return body  # already a Responses object (an API-key upstream)
        return gathered_response(body)

    def quota(self, status: int, headers: dict[str, str], error: bytes | None) -> dict[str, Any] | None:
        """The ChatGPT plan's windows: x-codex-primary-* (5 hours), x-codex-secondary-* (a week)."""
        snapshot: dict[str, Any] = {}
        now = time.time()
        for window in ("primary", "secondary"):
            prefix = f"x-codex-{window}-"
            entry: dict[str, Any] = {}
            used = _number(headers.get(prefix + "used-percent"))
            if used is not None:
                entry["used_percent"] = used
            after = _number(headers.get(prefix + "reset-after-seconds"))
            if after is not None:
                entry["resets_at"] = int(now + after)
            minutes = _number(headers.get(prefix + "window-minutes"))
            if minutes is not None:
                entry["window_minutes"] = int(minutes)
            if entry:
                snapshot[window] = entry
        if error is not None and status == 429:
            resets = self.resets_at(headers, error, now)
            if b"usage_limit_reached" in error:
                snapshot["status"] = "usage_limit_reached"
                if resets:
                    snapshot["resets_at"] = int(resets)
        if not snapshot:
            return None
        return {"kind": "codex", **snapshot}

    def resets_at(self, headers: dict[str, str], body: bytes, now: float) -> float | None:
        # The ChatGPT backend's plan limit: {"error": {"type": "usage_limit_reached", "resets_in_seconds": N}}
        try:
            error = orjson.loads(body).get("error")
        except (orjson.JSONDecodeError, AttributeError):
            error = None
        if isinstance(error, dict):
            seconds = error.get("resets_in_seconds")
            if isinstance(seconds, int | float) and seconds > 0:
                return now + float(seconds)
            at = error.get("resets_at")
            if isinstance(at, int | float) and at > now:
                return float(at)
        return retry_after(headers, now)

    def probe_body(self, model: str, message: str) -> bytes:
        return orjson.dumps({"model": model, "input": message, "stream": False})

    def reply_text(self, data: Any) -> str:
        try:
            return "".join(
                c.get("text", "")
                for item in data["output"]
                if item.get("type") == "message"
                for c in item["content"]
            )
        except (KeyError, TypeError, AttributeError):
            return ""


def gathered_response(stream: bytes) -> bytes:
    """The final Responses object of a whole SSE stream (its last `response.*` end event)."""
    final: dict[str, Any] | None = None
    for event, data in SSEParser().feed(stream + b"\n\n"):
        if event is not None and event.encode() not in _FINAL_EVENTS:
            continue
        try:
            decoded = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if isinstance(decoded, dict) and str(decoded.get("type", "")).encode() in _FINAL_EVENTS:
            final = decoded
    if final is None:
        raise ValueError("the stream ended without a final response event")
    response = final.get("response")
    if not isinstance(response, dict):
        raise ValueError("the final event carries no response object")
    return orjson.dumps(response)


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
