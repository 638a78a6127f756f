"""AWS Bedrock's InvokeModel for Claude (``/model/{modelId}/invoke``, ``/invoke-with-response-stream``,
``/count-tokens``), checking what the real service checks before it answers.

- Authentication: a SigV4 signature (recomputed with botocore over the received method, raw path,
  signed headers and body bytes, with the secret the mock knows for the access key id; a session
  token must match the one registered with the key), or ``Authorization: Bearer`` with a known
  Bedrock API key. Credentials are registered with ``POST /__mock/bedrock/credentials``
  (``{"access_key_id", "secret_access_key", "session_token"?}`` or ``{"api_key"}``); behaviour
  switches and request records are keyed by the access key id (or the API key).
- Body: ``anthropic_version: bedrock-2023-05-31``, no ``model`` or ``stream``, only betas Bedrock
  knows; count-tokens wraps that body as ``{"input": {"invokeModel": {"body": base64}}}``.
- Model id: a Bedrock id; models Bedrock serves only through an inference profile refuse a bare id,
  and count-tokens refuses a profile.
- Answers: Anthropic Messages JSON; streams as AWS event-stream frames (``chunk`` events carrying
  base64 Anthropic events, CRC32-checked); errors as ``{"message"}`` + ``x-amzn-errortype``.

Switches: the error modes answer Bedrock's errors (429 ThrottlingException, 529 → 503
ServiceUnavailableException, ...); ``cut`` drops a stream in the middle of a frame; in ``ok`` mode a
``body`` of ``exception:<type>`` ends a stream with that exception frame halfway through.
Error modes answer before the signature is checked.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import struct
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from .common import (
    JSON_CT,
    Call,
    bearer_token,
    count_input_tokens,
    dumps,
    json_response,
    new_id,
    send_body,
    send_stream,
    tokens,
)

MISSING_KEY_MESSAGE = "Missing Authentication Token"
VERSION = "bedrock-2023-05-31"
EVENTSTREAM_CT = "application/vnd.amazon.eventstream"
_ERRORTYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details."
)
_BAD_TOKEN = "The security token included in the request is invalid."
_MAX_SKEW = 15 * 60

_ERRORS: dict[str, tuple[int, str, str]] = {
    "400": (400, "ValidationException", "Malformed input request, please reformat your input and try again."),
    "401": (403, "UnrecognizedClientException", _BAD_TOKEN),
    "403": (403, "AccessDeniedException", "You don't have access to the model with the specified model ID."),
    "404": (404, "ResourceNotFoundException", "Could not resolve the foundation model from the model id."),
    "429": (429, "ThrottlingException", "Too many requests, please wait before trying again."),
    "500": (500, "InternalServerException", "The server encountered an internal error."),
    "529": (503, "ServiceUnavailableException", "Bedrock is unable to process your request."),
}
# What the fake accepts in anthropic_beta (the real service answers "invalid beta flag" otherwise).
KNOWN_BETAS = frozenset(
    {
        "computer-use-2024-10-22",
        "computer-use-2025-01-24",
        "token-efficient-tools-2025-02-19",
        "interleaved-thinking-2025-05-14",
        "output-128k-2025-02-19",
        "dev-full-thinking-2025-05-14",
        "context-1m-2025-08-07",
        "context-management-2025-06-27",
        "effort-2025-11-24",
        "tool-search-tool-2025-10-19",
        "tool-examples-2025-10-29",
    }
)
_MODEL_ID = re.compile(
    r"^(?:(?P<profile>us-gov|us|eu|apac|jp|au|ca|global)\.)?anthropic\.claude-[a-z0-9.:-]+$"
)
_ARN = re.compile(r"^arn:aws[a-z-]*:bedrock:[a-z0-9-]+:\d*:[a-z-]+/.+$")
# Ids Bedrock still serves on demand; every newer model needs a cross-region inference profile.
_ON_DEMAND = (
    "anthropic.claude-3-haiku-",
    "anthropic.claude-3-5-sonnet-20240620",
    "anthropic.claude-3-sonnet-",
)
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/"
    r"(?P<service>[^/,\s]+)/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)


@dataclass(slots=True)
class BedrockCredentials:
    """What the fake AWS knows: access key id → (secret, session token), and Bedrock API keys."""

    keys: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    api_keys: set[str] = field(default_factory=set)


CREDENTIALS = web.AppKey("mock_bedrock_credentials", BedrockCredentials)


def install(app: web.Application) -> None:
    """The credential store and its admin route (add before the catch-all route)."""
    app[CREDENTIALS] = BedrockCredentials()
    app.router.add_post("/__mock/bedrock/credentials", _register)


async def _register(request: web.Request) -> web.Response:
    store = request.app[CREDENTIALS]
    try:
        data = orjson.loads(await request.read())
        if data.get("api_key"):
            store.api_keys.add(str(data["api_key"]))
        else:
            token = data.get("session_token")
            store.keys[str(data["access_key_id"])] = (
                str(data["secret_access_key"]),
                str(token) if token else None,
            )
    except (orjson.JSONDecodeError, KeyError, AttributeError, TypeError) as exc:
        body = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return web.Response(body=dumps(body), status=400, content_type=JSON_CT)
    return web.Response(body=dumps({"ok": True}), content_type=JSON_CT)


# -- routing -------------------------------------------------------------------------------------

Handler = Callable[[Call], Awaitable[web.StreamResponse]]


def route(path: str) -> tuple[str, Handler, str] | None:
    """(endpoint, handler, model id) for ``…/model/{modelId}/{action}``; None for other paths."""
    marker = path.find("/model/")
    if marker < 0:
        return None
    model, _, action = path[marker + len("/model/") :].rpartition("/")
    handler = _ACTIONS.get(action)
    if handler is None or not model:
        return None
    return action, handler, model


def extract_key(request: web.Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.startswith("AWS4-HMAC-SHA256 "):
        found = re.search(r"Credential=([^/,\s]+)/", auth)
        return found.group(1) if found else None
    return bearer_token(request)


# -- errors --------------------------------------------------------------------------------------


def _error(call: Call, status: int, aws_type: str, message: str) -> web.Response:
    headers = {
        "Content-Type": JSON_CT,
        "x-amzn-RequestId": call.request_id,
        "x-amzn-ErrorType": aws_type + _ERRORTYPE_SUFFIX,
    }
    return json_response(call, {"message": message}, headers, status)


def error(call: Call, mode: str, message: str | None = None) -> web.Response:
    if mode == "401" and message == MISSING_KEY_MESSAGE:
        return _error(call, 403, "MissingAuthenticationTokenException", MISSING_KEY_MESSAGE)
    status, aws_type, default = _ERRORS[mode]
    return _error(call, status, aws_type, message or call.behaviour.body or default)


# -- authentication ------------------------------------------------------------------------------


def _recomputed_signature(
    request: web.Request,
    body: bytes,
    signed: list[str],
    secret: str,
    token: str | None,
    scope: dict[str, str],
) -> str:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = {name: request.headers.get(name, "") for name in signed}
    url = f"http://{request.headers.get('host', '')}{request.raw_path}"
    aws = AWSRequest(method=request.method, url=url, data=body, headers=headers)
    aws.context["timestamp"] = request.headers.get("x-amz-date", "")
    signer = SigV4Auth(Credentials(scope["key"], secret, token), scope["service"], scope["region"])
    return signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)


async def _authenticate(call: Call) -> web.Response | None:
    request = call.request
    store = request.app[CREDENTIALS]
    auth = request.headers.get("authorization", "")
    facts: dict[str, Any] = {"raw_path": request.raw_path}
    call.record["bedrock"] = facts
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        facts["auth"] = "bearer"
        if bearer_token(request) in store.api_keys:
            return None
        message = "Authentication failed: Please make sure your API Key is valid."
        return _error(call, 403, "UnrecognizedClientException", message)
    facts["auth"] = "sigv4"
    parsed = _AUTH.match(auth)
    if parsed is None:
        return _error(call, 403, "IncompleteSignatureException", "Authorization header requires parameters.")
    scope = parsed.groupdict()
    signed = scope["signed"].split(";")
    facts |= {"region": scope["region"], "service": scope["service"], "signed_headers": signed}
    known = store.keys.get(scope["key"])
    sent_token = request.headers.get("x-amz-security-token")
    facts["session_token"] = sent_token is not None
    if known is None:
        return _error(call, 403, "UnrecognizedClientException", _BAD_TOKEN)
    secret, token = known
    if token != sent_token or (token and "x-amz-security-token" not in signed):
        return _error(call, 403, "UnrecognizedClientException", _BAD_TOKEN)
    if scope["service"] != "bedrock":
        message = f"Credential should be scoped to correct service: 'bedrock'. Not '{scope['service']}'."
        return _error(call, 403, "InvalidSignatureException", message)
    if not {"host", "x-amz-date"} <= set(signed):
        return _error(call, 403, "InvalidSignatureException", "Host and x-amz-date must be signed.")
    amz_date = request.headers.get("x-amz-date", "")
    try:
        stamp = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return _error(call, 403, "IncompleteSignatureException", "Date must be in ISO-8601 basic format.")
    if abs(time.time() - stamp) > _MAX_SKEW or not amz_date.startswith(scope["date"]):
        return _error(call, 403, "InvalidSignatureException", f"Signature expired: {amz_date}.")
    body = await request.read()
    expected = _recomputed_signature(request, body, signed, secret, token, scope)
    if not hmac.compare_digest(expected, scope["signature"]):
        return _error(call, 403, "InvalidSignatureException", _SIGNATURE_MISMATCH)
    return None


# -- the request body ----------------------------------------------------------------------------


def _body_problem(body: dict[str, Any]) -> str | None:
    """Bedrock's refusal of an InvokeModel body, or None when it is acceptable."""
    for key in ("model", "stream"):
        if key in body:
            return f"Malformed input request: #: extraneous key [{key}] is not permitted, please reformat."
    if body.get("anthropic_version") != VERSION:
        return "Malformed input request: #/anthropic_version: bedrock-2023-05-31 expected."
    betas = body.get("anthropic_beta", [])
    if not isinstance(betas, list) or any(beta not in KNOWN_BETAS for beta in betas):
        return "invalid beta flag"
    if not isinstance(body.get("messages"), list):
        return "Malformed input request: #: required key [messages] not found, please reformat."
    if not isinstance(body.get("max_tokens"), int):
        return "Malformed input request: #: required key [max_tokens] not found, please reformat."
    return None


def _model_problem(model: str, *, counting: bool) -> str | None:
    if _ARN.match(model):
        return None
    found = _MODEL_ID.match(model)
    if found is None:
        return "The provided model identifier is invalid."
    if counting and found.group("profile"):
        return "The provided model doesn't support counting tokens."
    if not counting and not found.group("profile") and not model.startswith(_ON_DEMAND):
        return (
            f"Invocation of model ID {model} with on-demand throughput isn't supported. Retry your request "
            "with the ID or ARN of an inference profile that contains this model."
        )
    return None


async def _checked(call: Call, *, counting: bool = False) -> web.Response | None:
    denied = await _authenticate(call)
    if denied is not None:
        return denied
    problem = _model_problem(call.model, counting=counting)
    if problem is None and not counting:
        problem = _body_problem(call.body)
    if problem is not None:
        return _error(call, 400, "ValidationException", problem)
    return None


# -- answers -------------------------------------------------------------------------------------


def _usage(call: Call, inp: int, out: int) -> dict[str, Any]:
    b = call.behaviour
    return {
        "input_tokens": inp,
        "cache_creation_input_tokens": b.cache_creation,
        "cache_read_input_tokens": b.cache_read,
        "output_tokens": out,
    }


def _headers(call: Call, content_type: str) -> dict[str, str]:
    return {"Content-Type": content_type, "x-amzn-RequestId": call.request_id}


async def invoke(call: Call) -> web.StreamResponse:
    refused = await _checked(call)
    if refused is not None:
        return refused
    chunks, truncated = call.plan_words(call.body.get("max_tokens"))
    inp, b = call.input_tokens(), call.behaviour
    text = "".join(chunks)
    usage = _usage(call, inp, len(chunks))
    message = {
        "id": new_id("msg_bdrk_"),
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "max_tokens" if truncated else "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }
    call.report(usage, tokens(inp, len(chunks), b.cache_read, b.cache_creation), text)
    headers = _headers(call, JSON_CT) | {
        "X-Amzn-Bedrock-Input-Token-Count": str(inp),
        "X-Amzn-Bedrock-Output-Token-Count": str(len(chunks)),
        "X-Amzn-Bedrock-Invocation-Latency": "42",
    }
    return await send_body(call, dumps(message), headers)


def _header(name: str, value: str) -> bytes:
    """A header of type 7 (string): name length, name, type, value length, value."""
    raw = value.encode()
    return struct.pack(">B", len(name)) + name.encode() + b"\x07" + struct.pack(">H", len(raw)) + raw


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude, prelude CRC32, string headers, payload, message CRC32."""
    packed = b"".join(_header(name, value) for name, value in headers.items())
    prelude = struct.pack(">II", 16 + len(packed) + len(payload), len(packed))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + packed + payload
    return message + struct.pack(">I", zlib.crc32(message))


def chunk_frame(event: dict[str, Any]) -> bytes:
    encoded = base64.b64encode(dumps(event)).decode()
    payload = dumps({"bytes": encoded, "p": "abcdefghijklmnopqrstuvwxyzABCDEF"[: 1 + len(encoded) % 31]})
    headers = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, payload)


def exception_frame(aws_type: str, message: str) -> bytes:
    headers = {":exception-type": aws_type, ":content-type": "application/json", ":message-type": "exception"}
    return frame(headers, dumps({"message": message}))


async def invoke_stream(call: Call) -> web.StreamResponse:
    call.record["stream"] = True
    refused = await _checked(call)
    if refused is not None:
        return refused
    chunks, truncated = call.plan_words(call.body.get("max_tokens"))
    inp, b = call.input_tokens(), call.behaviour
    start_usage = _usage(call, inp, 1)
    message = {
        "id": new_id("msg_bdrk_"),
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    stop_reason = "max_tokens" if truncated else "end_turn"
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": c}}
            for c in chunks
        ),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": len(chunks)},
        },
        {
            "type": "message_stop",
            "amazon-bedrock-invocationMetrics": {
                "inputTokenCount": inp,
                "outputTokenCount": len(chunks),
                "invocationLatency": 42,
                "firstByteLatency": 7,
            },
        },
    ]
    frames = [chunk_frame(event) for event in events]
    headers = _headers(call, EVENTSTREAM_CT) | {"X-Amzn-Bedrock-Content-Type": JSON_CT}
    sent = max(1, len(chunks) // 2)
    partial = tokens(inp, 1, b.cache_read, b.cache_creation)
    if b.mode == "cut":  # half the deltas, then half of the next frame, then the connection drops
        kept = frames[: 2 + sent]
        call.report(start_usage, partial, "".join(chunks[:sent]), completed=False)
        return await send_stream(call, [*kept, frames[2 + sent][:20]], headers, cut_at=len(kept) + 1)
    if b.mode == "ok" and b.body and b.body.startswith("exception:"):
        aws_type = b.body.split(":", 1)[1] or "modelStreamErrorException"
        failure = exception_frame(aws_type, f"The stream was interrupted ({aws_type}).")
        call.report(start_usage, partial, "".join(chunks[:sent]), completed=False)
        return await send_stream(call, [*frames[: 2 + sent], failure], headers)
    call.report(
        {**start_usage, "output_tokens": len(chunks)},
        tokens(inp, len(chunks), b.cache_read, b.cache_creation),
        "".join(chunks),
    )
    return await send_stream(call, frames, headers)


async def count_tokens(call: Call) -> web.StreamResponse:
    refused = await _checked(call, counting=True)
    if refused is not None:
        return refused
    try:
        encoded = call.body["input"]["invokeModel"]["body"]
        inner = orjson.loads(base64.b64decode(encoded, validate=True))
    except (KeyError, TypeError, binascii.Error, orjson.JSONDecodeError):
        return _error(call, 400, "ValidationException", "input.invokeModel.body must be a base64 JSON body.")
    problem = _body_problem(inner) if isinstance(inner, dict) else "The body is not a JSON object."
    if problem is not None:
        return _error(call, 400, "ValidationException", problem)
    count = {"inputTokens": count_input_tokens(inner)}
    call.record["json"] = {**call.body, "decoded_body": inner}
    call.report(count, None, "")
    return json_response(call, count, _headers(call, JSON_CT))


_ACTIONS: dict[str, Handler] = {
    "invoke": invoke,
    "invoke-with-response-stream": invoke_stream,
    "count-tokens": count_tokens,
}
