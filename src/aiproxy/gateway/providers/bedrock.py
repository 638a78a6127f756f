"""AWS Bedrock: Claude through InvokeModel, for `bedrock` accounts.

- URL: `{root}/model/{modelId}/invoke` (whole answer), `/invoke-with-response-stream` (stream) or
  `/count-tokens`; root = the account's `base_url`, else `https://bedrock-runtime.{region}.amazonaws.com`.
  The model id is URL-encoded (`:` → `%3A`) and the URL object is built already encoded, so the
  HTTP client sends exactly the path that was signed.
- Model id: an id that already names a Bedrock model (`anthropic.` in it, or an ARN) passes
  unchanged, so an account's `model_mapping` to one wins; a public Claude name is looked up
  in `CLAUDE_ON_BEDROCK`, with the cross-region inference-profile prefix of the account's region
  for the models Bedrock serves only through a profile.
- Body: the client's Messages body without `model` and `stream`, with `anthropic_version` and
  the client's `anthropic-beta` values as an `anthropic_beta` list (only the betas Bedrock knows:
  it refuses the whole request for any other).
- Auth: SigV4 (botocore) over method, URL, headers and the exact body for an access key id +
  secret (+ session token); `Authorization: Bearer` for a Bedrock API key (`access_token`).
- Answers: a whole answer is Anthropic Messages JSON already; a stream is AWS event-stream
  frames, each `chunk` carrying one Anthropic event base64-encoded: decoded to Anthropic SSE.
  Errors (`{"message": ...}` + `x-amzn-errortype`) are rewritten in Anthropic's error shape.

botocore is imported on first use: it adds about 0.2 s to an import, which a relay without
Bedrock accounts never pays.
"""

from __future__ import annotations

import base64
import functools
import logging
import re
from typing import Any
from urllib.parse import quote

import orjson
from yarl import URL

from ..errors import ANTHROPIC_ERROR_TYPES, CLAUDE
from ..pool import PoolAccount
from .anthropic import messages_text
from .base import Provider, UpstreamCall, UpstreamRequest

BEDROCK_VERSION = "bedrock-2023-05-31"
EVENTSTREAM = "application/vnd.amazon.eventstream"
SERVICE = "bedrock"
DEFAULT_REGION = "us-east-1"

# Public Claude model names → Bedrock foundation model id, and whether Bedrock serves the model only
# through a cross-region inference profile (the id then gets the region's prefix, e.g. `us.`).
# An account's model_mapping covers anything else (a newer model, an ARN, a `global.` profile).
_CLAUDE_MODELS: tuple[tuple[str, bool, tuple[str, ...]], ...] = (
    ("anthropic.claude-opus-4-7", True, ("claude-opus-4-7", "claude-opus-4-7-20260416")),
    ("anthropic.claude-opus-4-6-v1", True, ("claude-opus-4-6", "claude-opus-4-6-20260205")),
    ("anthropic.claude-sonnet-4-6", True, ("claude-sonnet-4-6",)),
    ("anthropic.claude-opus-4-5-20251101-v1:0", True, ("claude-opus-4-5", "claude-opus-4-5-20251101")),
    ("anthropic.claude-haiku-4-5-20251001-v1:0", True, ("claude-haiku-4-5", "claude-haiku-4-5-20251001")),
    ("anthropic.claude-sonnet-4-5-20250929-v1:0", True, ("claude-sonnet-4-5", "claude-sonnet-4-5-20250929")),
    ("anthropic.claude-opus-4-1-20250805-v1:0", True, ("claude-opus-4-1", "claude-opus-4-1-20250805")),
    ("anthropic.claude-opus-4-20250514-v1:0", True, ("claude-opus-4-0", "claude-opus-4-20250514")),
    ("anthropic.claude-sonnet-4-20250514-v1:0", True, ("claude-sonnet-4-0", "claude-sonnet-4-20250514")),
    (
        "anthropic.claude-3-7-sonnet-20250219-v1:0",
        True,
        ("claude-3-7-sonnet-latest", "claude-3-7-sonnet-20250219"),
    ),
    (
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        True,
        ("claude-3-5-haiku-latest", "claude-3-5-haiku-20241022"),
    ),
    (
        "anthropic.claude-3-5-sonnet-20241022-v2:0",
        True,
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet-20241022"),
    ),
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", False, ("claude-3-5-sonnet-20240620",)),
    ("anthropic.claude-3-haiku-20240307-v1:0", False, ("claude-3-haiku-20240307",)),
)
CLAUDE_ON_BEDROCK: dict[str, tuple[str, bool]] = {
    name: (model_id, profile) for model_id, profile, names in _CLAUDE_MODELS for name in names
}

# Betas Bedrock's Claude accepts in `anthropic_beta`; any other one fails the whole request with
# "invalid beta flag" (Claude Code sends Anthropic-only ones such as claude-code-20250219).
BEDROCK_BETAS = frozenset(
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

_PROFILE_PREFIX = re.compile(r"^(?:us-gov|us|eu|apac|jp|au|ca|global)\.(?=anthropic\.)")

# Bedrock error types (x-amzn-errortype, or an event-stream exception; compared lowercased) →
# Anthropic error types, which the client SDKs and the relay's error rules understand.
_ERROR_TYPES = {
    "throttlingexception": "rate_limit_error",
    "servicequotaexceededexception": "rate_limit_error",
    "toomanyrequestsexception": "rate_limit_error",
    "accessdeniedexception": "permission_error",
    "unrecognizedclientexception": "authentication_error",
    "invalidsignatureexception": "authentication_error",
    "incompletesignatureexception": "authentication_error",
    "missingauthenticationtokenexception": "authentication_error",
    "expiredtokenexception": "authentication_error",
    "validationexception": "invalid_request_error",
    "serializationexception": "invalid_request_error",
    "resourcenotfoundexception": "not_found_error",
    "modelnotreadyexception": "overloaded_error",
    "serviceunavailableexception": "overloaded_error",
    "internalserverexception": "api_error",
    "modelerrorexception": "api_error",
    "modelstreamerrorexception": "api_error",
    "modeltimeoutexception": "api_error",
}
_MIN_FRAME = 16  # prelude (8) + prelude CRC (4) + message CRC (4)


def profile_prefix(region: str) -> str:
    """The cross-region inference-profile prefix for a region (`us.`, `eu.`, `apac.`, else `global.`)."""
    if region.startswith("us-gov-"):
        return "us-gov."
    if region.startswith(("us-", "ca-")):
        return "us."
    if region.startswith("eu-"):
        return "eu."
    if region.startswith("ap-"):
        return "apac."
    return "global."


def is_bedrock_id(model: str) -> bool:
    return "anthropic." in model or model.startswith("arn:")


def bedrock_model_id(model: str, region: str, *, count_tokens: bool = False) -> str:
    """The Bedrock model id for a model name; CountTokens takes the bare foundation model id."""
    if is_bedrock_id(model):
        return _PROFILE_PREFIX.sub("", model) if count_tokens else model
    known = CLAUDE_ON_BEDROCK.get(model)
    if known is None:
        return model  # Bedrock names what it does not know ("The provided model identifier is invalid")
    model_id, profile = known
    return profile_prefix(region) + model_id if profile and not count_tokens else model_id


def bedrock_betas(client_headers: dict[bytes, bytes], sent: Any) -> list[str]:
    """The client's betas (header values, then any `anthropic_beta` it put in the body) Bedrock knows."""
    values = client_headers.get(b"anthropic-beta", b"").decode("latin-1").split(",")
    if isinstance(sent, list):
        values += [v for v in sent if isinstance(v, str)]
    kept: dict[str, None] = {}
    for value in values:
        value = value.strip()
        if value in BEDROCK_BETAS:
            kept.setdefault(value, None)
    return list(kept)


@functools.cache
def _botocore() -> tuple[Any, Any, Any]:
    """botocore's signer, request and credentials, imported once, when first needed."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    # Its debug log prints canonical requests, session token included: never let it through.
    logging.getLogger("botocore.auth").setLevel(logging.INFO)
    return SigV4Auth, AWSRequest, Credentials


def sigv4_headers(
    url: str, headers: dict[str, str], body: bytes, *, region: str, key_id: str, secret: str, token: str
) -> dict[str, str]:
    """`headers` plus `x-amz-date`, `x-amz-security-token` (with a token) and `authorization`."""
    sigv4, aws_request, credentials = _botocore()
    request = aws_request(method="POST", url=url, data=body, headers=headers)
    sigv4(credentials(key_id, secret, token or None), SERVICE, region).add_auth(request)
    return {name.lower(): value for name, value in request.headers.items()}


def anthropic_error(kind: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


def error_type(aws_type: str, status: int) -> str:
    """The Anthropic error type for a Bedrock error (`ThrottlingException:http://…` or bare)."""
    name = aws_type.split(":", 1)[0].rsplit("#", 1)[-1].strip().lower()
    return _ERROR_TYPES.get(name) or ANTHROPIC_ERROR_TYPES.get(status) or "api_error"


class EventStreamDecoder:
    """AWS event-stream frames → Anthropic SSE; frames may be split across chunks or share one.

    A `chunk` event carries `{"bytes": base64(one Anthropic stream event)}`; an exception frame
    (throttling, a model stream error, ...) becomes an Anthropic `error` event and ends the stream.
    Never raises: a bad checksum or garbage stops the output, and the relay then bills what it saw
    and flags the stream truncated.
    """

    __slots__ = ("_buffer", "_done")

    def __init__(self) -> None:
        from botocore.eventstream import EventStreamBuffer  # light: no botocore.auth behind it

        self._buffer = EventStreamBuffer()
        self._done = False

    def feed(self, chunk: bytes) -> bytes:
        if self._done or not chunk:
            return b""
        out: list[bytes] = []
        try:
            self._buffer.add_data(chunk)
            for message in self._buffer:
                if message.prelude.total_length < _MIN_FRAME:
                    raise ValueError("event-stream frame shorter than its own framing")
                out.append(self._event(message.headers, message.payload))
                if self._done:
                    break
        except Exception:  # an untrusted stream: whatever is wrong with it, stop reading it
            self._done = True
            self._buffer = None
        return b"".join(out)

    def finish(self) -> bytes:
        return b""  # a frame left incomplete at the end is a cut stream: nothing to add

    def _event(self, headers: dict[str, Any], payload: bytes) -> bytes:
        kind = headers.get(":message-type")
        if kind == "event":
            if headers.get(":event-type") != "chunk":
                return b""  # nothing else carries the answer
            data = base64.b64decode(orjson.loads(payload)["bytes"], validate=True)
            event = orjson.loads(data)
            name = event["type"]
            if not isinstance(name, str) or not name or any(c in name for c in "\r\n:"):
                raise ValueError("unusable event type")
            if b"\n" in data or b"\r" in data:
                data = orjson.dumps(event)  # SSE data must stay on one line
            return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"
        if kind == "exception":
            aws_type = str(headers.get(":exception-type", ""))
            message = _message_of(payload) or aws_type or "Bedrock stream exception"
            return self._error(error_type(aws_type, 0), message)
        if kind == "error":
            code = str(headers.get(":error-code", ""))
            message = str(headers.get(":error-message", "")) or code or "Bedrock stream error"
            return self._error(error_type(code, 0), message)
        return b""

    def _error(self, kind: str, message: str) -> bytes:
        self._done = True
        return b"event: error\ndata: " + anthropic_error(kind, message) + b"\n\n"


def _message_of(payload: bytes) -> str:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload[:500].decode("utf-8", "replace")
    if isinstance(data, dict):
        message = data.get("message") or data.get("Message")
        if isinstance(message, str):
            return message
    return ""


class BedrockProvider(Provider):
    wire = CLAUDE
    forward = frozenset()  # nothing of the client's goes to AWS but the body
    default_probe_model = "claude-haiku-4-5"

    def build(self, account: PoolAccount, request: UpstreamRequest, body: bytes = b"") -> UpstreamCall:
        region = account.region or DEFAULT_REGION
        model_id = bedrock_model_id(request.model, region, count_tokens=request.count_tokens)
        if request.count_tokens:
            action = "count-tokens"
        else:
            action = "invoke-with-response-stream" if request.stream else "invoke"
        root = account.base_url or f"https://bedrock-runtime.{region}.amazonaws.com"
        # The client's query (Claude Code's ?beta=true) means nothing to Bedrock: never sent.
        url = f"{root}/model/{quote(model_id, safe='')}/{action}"
        headers = {
            "content-type": "application/json",
            "accept": EVENTSTREAM if request.stream and not request.count_tokens else "application/json",
        }
        creds = account.credentials
        if creds.get("api_key") and creds.get("api_secret"):
            headers = sigv4_headers(
                url,
                headers,
                body,
                region=region,
                key_id=creds["api_key"],
                secret=creds["api_secret"],
                token=creds.get("session_token", ""),
            )
        elif creds.get("access_token"):
            headers["authorization"] = f"Bearer {creds['access_token']}"
        headers["accept-encoding"] = "identity"  # not signed: usage is read from the answer
        # Already encoded: the HTTP client must not turn %3A back into ":" after signing.
        return UpstreamCall(url=URL(url, encoded=True), headers=headers)

    def encode(
        self, account: PoolAccount, request: UpstreamRequest, payload: dict[str, Any], raw: bytes | None
    ) -> bytes:
        body = {k: v for k, v in payload.items() if k not in ("model", "stream", "anthropic_beta")}
        body["anthropic_version"] = BEDROCK_VERSION
        betas = bedrock_betas(request.client_headers, payload.get("anthropic_beta"))
        if betas:
            body["anthropic_beta"] = betas
        if not request.count_tokens:
            return orjson.dumps(body)
        if "max_tokens" not in body:  # required by InvokeModel, meaningless for a count
            thinking = body.get("thinking")
            budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
            body["max_tokens"] = budget + 1 if isinstance(budget, int) else 1
        invoke = base64.b64encode(orjson.dumps(body)).decode()
        return orjson.dumps({"input": {"invokeModel": {"body": invoke}}})

    def decode_answer(self, request: UpstreamRequest, body: bytes) -> bytes:
        if not request.count_tokens:
            return body  # Anthropic Messages JSON, usage included
        count = orjson.loads(body)["inputTokens"]
        if not isinstance(count, int):
            raise ValueError("inputTokens is not a number")
        return orjson.dumps({"input_tokens": count})

    def stream_decoder(self, request: UpstreamRequest) -> EventStreamDecoder:
        return EventStreamDecoder()

    def error_in_wire(self, status: int, headers: dict[str, str], body: bytes) -> bytes:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body  # a proxy's page: the relay answers in the client's shape itself
        if not isinstance(data, dict) or data.get("type") == "error":
            return body
        message = data.get("message") or data.get("Message")
        aws_type = headers.get("x-amzn-errortype") or str(data.get("__type", ""))
        if not isinstance(message, str) or not message:
            message = aws_type.split(":", 1)[0] or f"Bedrock returned HTTP {status}"
        return anthropic_error(error_type(aws_type, status), message)

    def probe_body(self, model: str, message: str) -> bytes:
        body = {
            "anthropic_version": BEDROCK_VERSION,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": message}],
        }
        return orjson.dumps(body)

    def reply_text(self, data: Any) -> str:
        return messages_text(data)  # Bedrock answers Anthropic Messages JSON
