"""The Bedrock provider: model ids, URL, body, SigV4 or API-key auth, answers and errors."""

from __future__ import annotations

import base64
import dataclasses

import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from aiproxy.gateway.errors import CLAUDE
from aiproxy.gateway.pool import PoolAccount
from aiproxy.gateway.providers import UpstreamRequest, provider_for
from aiproxy.gateway.providers.bedrock import (
    CLAUDE_ON_BEDROCK,
    BedrockProvider,
    EventStreamDecoder,
    bedrock_model_id,
    profile_prefix,
)

CLIENT = {
    b"content-type": b"application/json",
    b"user-agent": b"claude-cli/2.1.0 (external, cli)",
    b"x-api-key": b"sk-relay-key",
    b"anthropic-version": b"2023-06-01",
    b"anthropic-beta": b"claude-code-20250219, interleaved-thinking-2025-05-14,oauth-2025-04-20",
    b"x-stainless-lang": b"js",
    b"cookie": b"a=b",
}
PROVIDER = BedrockProvider()


def _account(**fields: object) -> PoolAccount:
    account = PoolAccount(
        id=7,
        name="aws",
        type="bedrock",
        family=CLAUDE,
        status="valid",
        cooldown_until=0.0,
        priority=50,
        weight=1,
        max_concurrency=0,
        base_url="",
        credentials={"api_key": "AKIAEXAMPLE", "api_secret": "wJalrXUtnFEMI/K7MDENG"},
        api_version="",
        deployment="",
        organization_id="",
        model_mapping={},
        allowed_models=None,
        proxy_url=None,
        groups=frozenset(),
        region="us-east-1",
    )
    return dataclasses.replace(account, **fields)


def _request(model: str = "claude-sonnet-4-5", **fields: object) -> UpstreamRequest:
    return UpstreamRequest(model=model, client_headers=CLIENT, query="beta=true", **fields)  # type: ignore[arg-type]


def test_provider_for_bedrock_accounts_only() -> None:
    assert provider_for(_account(), CLAUDE) is provider_for(_account(region="eu-west-1"), CLAUDE)
    assert isinstance(provider_for(_account(), CLAUDE), BedrockProvider)
    other = dataclasses.replace(_account(), type="claude-official")
    assert not isinstance(provider_for(other, CLAUDE), BedrockProvider)


@pytest.mark.parametrize(
    ("region", "prefix"),
    [
        ("us-east-1", "us."),
        ("us-west-2", "us."),
        ("ca-central-1", "us."),
        ("us-gov-west-1", "us-gov."),
        ("eu-central-1", "eu."),
        ("ap-northeast-1", "apac."),
        ("sa-east-1", "global."),
    ],
)
def test_profile_prefix_by_region(region: str, prefix: str) -> None:
    assert profile_prefix(region) == prefix


def test_model_ids() -> None:
    sonnet = "anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert bedrock_model_id("claude-sonnet-4-5", "us-east-1") == "us." + sonnet
    assert bedrock_model_id("claude-sonnet-4-5-20250929", "eu-west-3") == "eu." + sonnet
    assert (
        bedrock_model_id("claude-opus-4-1", "ap-southeast-1")
        == "apac.anthropic.claude-opus-4-1-20250805-v1:0"
    )
    assert (
        bedrock_model_id("claude-3-haiku-20240307", "us-east-1") == "anthropic.claude-3-haiku-20240307-v1:0"
    )
    assert bedrock_model_id("claude-3-5-haiku-20241022", "us-west-2").startswith(
        "us.anthropic.claude-3-5-haiku"
    )
    # An id that already names a Bedrock model (an account's mapping to it) passes unchanged.
    for given in ("eu.anthropic.claude-sonnet-4-5-20250929-v1:0", "arn:aws:bedrock:us-east-1:1:x/y"):
        assert bedrock_model_id(given, "us-east-1") == given
    assert bedrock_model_id("my-unknown-model", "us-east-1") == "my-unknown-model"
    # CountTokens takes the bare foundation model id.
    assert bedrock_model_id("claude-sonnet-4-5", "us-east-1", count_tokens=True) == sonnet
    assert bedrock_model_id("global." + sonnet, "us-east-1", count_tokens=True) == sonnet
    assert all(model_id.startswith("anthropic.claude-") for model_id, _ in CLAUDE_ON_BEDROCK.values())


def test_url_is_encoded_and_signed_exactly_as_sent() -> None:
    account = _account(credentials={"api_key": "AKIAEXAMPLE", "api_secret": "s3cret", "session_token": "tok"})
    request = _request(stream=True)
    body = PROVIDER.encode(account, request, {"model": "claude-sonnet-4-5", "max_tokens": 9}, None)
    call = PROVIDER.build(account, request, body)
    url = str(call.url)
    assert url == (
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/"
        "us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream"
    )
    assert call.url.raw_path.endswith("v1%3A0/invoke-with-response-stream")  # type: ignore[attr-defined]
    headers = call.headers
    assert set(headers) == {
        "content-type",
        "accept",
        "accept-encoding",
        "x-amz-date",
        "x-amz-security-token",
        "authorization",
    }
    assert headers["accept"] == "application/vnd.amazon.eventstream"
    assert headers["x-amz-security-token"] == "tok"
    auth = headers["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/")
    assert "/us-east-1/bedrock/aws4_request" in auth
    assert "SignedHeaders=accept;content-type;host;x-amz-date;x-amz-security-token," in auth

    # A verifier recomputing the signature over what is sent agrees; another body does not.
    def signature(payload: bytes) -> str:
        signed = {k: headers[k] for k in ("accept", "content-type", "x-amz-date", "x-amz-security-token")}
        aws = AWSRequest(method="POST", url=url, data=payload, headers=signed)
        aws.context["timestamp"] = headers["x-amz-date"]
        signer = SigV4Auth(Credentials("AKIAEXAMPLE", "s3cret", "tok"), "bedrock", "us-east-1")
        return signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)

    assert auth.endswith(f"Signature={signature(body)}")
    assert not auth.endswith(f"Signature={signature(body + b' ')}")


def test_base_url_override_and_api_key_auth() -> None:
    account = _account(
        base_url="https://vpce-1.bedrock-runtime.example", credentials={"access_token": "ABSK-k"}
    )
    call = PROVIDER.build(account, _request(model="claude-haiku-4-5"), b"{}")
    assert str(call.url) == (
        "https://vpce-1.bedrock-runtime.example/model/us.anthropic.claude-haiku-4-5-20251001-v1%3A0/invoke"
    )
    assert call.headers == {
        "content-type": "application/json",
        "accept": "application/json",
        "authorization": "Bearer ABSK-k",
        "accept-encoding": "identity",
    }


def test_arn_model_is_one_path_segment() -> None:
    arn = "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/abc123"
    call = PROVIDER.build(_account(region="eu-west-1"), _request(model=arn, count_tokens=True), b"{}")
    assert str(call.url).endswith(
        "/model/arn%3Aaws%3Abedrock%3Aeu-west-1%3A123456789012%3Aapplication-inference-profile%2Fabc123"
        "/count-tokens"
    )


def test_body_drops_model_and_stream_and_carries_version_and_known_betas() -> None:
    payload = {"model": "claude-sonnet-4-5", "stream": True, "max_tokens": 5, "messages": [], "metadata": {}}
    body = orjson.loads(PROVIDER.encode(_account(), _request(stream=True), payload, orjson.dumps(payload)))
    assert body == {
        "max_tokens": 5,
        "messages": [],
        "metadata": {},
        "anthropic_version": "bedrock-2023-05-31",
        "anthropic_beta": ["interleaved-thinking-2025-05-14"],  # Anthropic-only betas are dropped
    }
    plain = UpstreamRequest(model="claude-sonnet-4-5", client_headers={})
    assert "anthropic_beta" not in orjson.loads(PROVIDER.encode(_account(), plain, payload, None))


def test_count_tokens_body_and_answer() -> None:
    payload = {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
    }
    request = _request(count_tokens=True)
    wrapped = orjson.loads(PROVIDER.encode(_account(), request, payload, None))
    inner = orjson.loads(base64.b64decode(wrapped["input"]["invokeModel"]["body"]))
    assert inner["anthropic_version"] == "bedrock-2023-05-31" and "model" not in inner
    assert inner["max_tokens"] == 2049  # required by InvokeModel, above the thinking budget
    assert PROVIDER.decode_answer(request, b'{"inputTokens": 42}') == b'{"input_tokens":42}'
    with pytest.raises(ValueError):
        PROVIDER.decode_answer(request, b'{"inputTokens": "many"}')
    answer = b'{"type":"message","usage":{"input_tokens":1,"output_tokens":2}}'
    assert PROVIDER.decode_answer(_request(), answer) is answer


@pytest.mark.parametrize(
    ("status", "errortype", "kind"),
    [
        (429, "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/", "rate_limit_error"),
        (400, "ServiceQuotaExceededException", "rate_limit_error"),
        (
            403,
            "AccessDeniedException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            "permission_error",
        ),
        (403, "InvalidSignatureException", "authentication_error"),
        (400, "ValidationException", "invalid_request_error"),
        (404, "ResourceNotFoundException", "not_found_error"),
        (429, "ModelNotReadyException", "overloaded_error"),
        (503, "ServiceUnavailableException", "overloaded_error"),
        (500, "InternalServerException", "api_error"),
        (429, "", "rate_limit_error"),
        (502, "", "api_error"),
    ],
)
def test_errors_in_anthropic_shape(status: int, errortype: str, kind: str) -> None:
    headers = {"x-amzn-errortype": errortype} if errortype else {}
    body = PROVIDER.error_in_wire(status, headers, b'{"message":"Too many requests"}')
    assert orjson.loads(body) == {"type": "error", "error": {"type": kind, "message": "Too many requests"}}


def test_other_error_bodies() -> None:
    capital = PROVIDER.error_in_wire(403, {}, b'{"Message":"User is not authorized"}')
    assert orjson.loads(capital)["error"] == {"type": "permission_error", "message": "User is not authorized"}
    typed = PROVIDER.error_in_wire(400, {}, b'{"__type":"com.amazon#ValidationException"}')
    assert orjson.loads(typed)["error"]["type"] == "invalid_request_error"
    for kept in (b"<html>502</html>", b'{"type":"error","error":{"type":"x","message":"y"}}', b"[1]"):
        assert PROVIDER.error_in_wire(502, {}, kept) == kept


def test_probe_body_and_reply() -> None:
    body = orjson.loads(PROVIDER.probe_body("claude-haiku-4-5", "Hello"))
    assert body["anthropic_version"] == "bedrock-2023-05-31" and "model" not in body
    again = orjson.loads(PROVIDER.encode(_account(), UpstreamRequest("m", {}), body, None))
    assert again == body  # the probe's encode step leaves it as is
    assert PROVIDER.reply_text({"content": [{"type": "text", "text": "hi"}]}) == "hi"
    assert PROVIDER.default_probe_model in CLAUDE_ON_BEDROCK
    assert isinstance(PROVIDER.stream_decoder(_request(stream=True)), EventStreamDecoder)
