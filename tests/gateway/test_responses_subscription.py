"""The Responses sub-paths through a Codex subscription (ChatGPT) account: compaction goes to the backend's
`/responses/compact`, billed and logged like a turn; what the backend does not have is a clear 400 without
calling it; its responses are never stored, so their ids are unknown to the calls on a stored response."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from ..support import RelayServer
from .conftest import Upstream
from .helpers import assert_billed, model_prices
from .restarts import started_relay
from .test_oauth_serving import CODEX_MODEL, OAuthSetup, current_access, relay_env

CONVERSATION = [
    {"role": "user", "content": "Refactor the parser."},
    {"role": "assistant", "content": "Done: the parser is now two functions."},
]


@pytest.fixture(scope="module")
def codex_relay(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayServer]:
    relay = started_relay(tmp_path_factory.mktemp("codex-relay"), relay_env(upstream))
    try:
        yield relay
    finally:
        relay.stop()


@pytest.fixture
def codex(codex_relay: RelayServer, upstream: Upstream) -> OAuthSetup:
    return OAuthSetup(codex_relay, upstream)


def client(codex: OAuthSetup) -> openai.OpenAI:
    return openai.OpenAI(api_key=codex.key, base_url=f"{codex.relay.base_url}/openai/v1", max_retries=0)


def test_compaction_goes_to_the_backends_compact_path(codex: OAuthSetup, upstream: Upstream) -> None:
    account = codex.onboard("openai")
    token = current_access(upstream, "openai")
    compacted = client(codex).responses.compact(
        model=CODEX_MODEL, input=CONVERSATION, extra_body={"temperature": 0.3}
    )
    assert compacted.object == "response.compaction" and compacted.output[-1].type == "compaction"
    (record,) = upstream.requests_for(token)
    assert record["path"] == "/responses/compact"  # the account's base URL + /responses/compact
    assert record["headers"]["chatgpt-account-id"] == account["extra"]["oauth"]["chatgpt_account_id"]
    assert record["headers"]["accept"] != "text/event-stream"  # a JSON answer, not a stream
    body = record["json"]
    assert "stream" not in body and "store" not in body and "temperature" not in body
    assert body["input"] == CONVERSATION and isinstance(body["instructions"], str)
    (log,) = codex.logs(expect=1)
    assert log["path"] == "/openai/v1/responses/compact" and log["account_id"] == account["id"]
    assert_billed(log, record["tokens"], model_prices(codex.admin, CODEX_MODEL))


def test_token_counting_is_refused_clearly_without_calling_the_backend(
    codex: OAuthSetup, upstream: Upstream
) -> None:
    codex.onboard("openai")
    token = current_access(upstream, "openai")
    with pytest.raises(openai.BadRequestError) as refused:
        client(codex).responses.input_tokens.count(model=CODEX_MODEL, input="How many?")
    assert refused.value.code == "invalid_request"
    assert "subscription" in refused.value.message and "API-key account" in refused.value.message
    assert upstream.requests_for(token) == []
    (log,) = codex.logs(expect=1)
    assert (log["status"], log["status_code"], log["cost"]) == ("error", 400, 0)


def test_subscription_responses_are_not_stored_so_their_ids_are_unknown(
    codex: OAuthSetup, upstream: Upstream
) -> None:
    codex.onboard("openai")
    token = current_access(upstream, "openai")
    made = client(codex).responses.create(model=CODEX_MODEL, input="hello")
    (record,) = upstream.requests_for(token)
    assert record["json"]["store"] is False
    with pytest.raises(openai.NotFoundError) as unknown:
        client(codex).responses.retrieve(made.id)
    assert unknown.value.code == "not_found"
    assert len(upstream.requests_for(token)) == 1
    assert sorted(log["status_code"] for log in codex.logs(expect=2)) == [200, 404]
