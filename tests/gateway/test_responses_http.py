"""The Responses API over HTTP as Codex and the official SDKs use it: the stream default and the Accept rule,
the model default, compaction, token counting, the calls on a stored response (sent to the account that
made it), and the route's own error codes. Each call is one request-log row, billed once when it has usage."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import openai
import orjson
import pytest

from ..support import Api
from .conftest import Pool
from .helpers import assert_billed, model_prices

MODEL = "gpt-5-codex"
PREFIXES = ["", "/v1", "/openai", "/openai/v1"]
CONVERSATION: list[Any] = [
    {"role": "user", "content": "Write a function that adds two numbers."},
    {"role": "assistant", "content": "def add(a, b):\n    return a + b"},
    {"role": "user", "content": "Now make it add three."},
]


def sdk(pool: Pool, prefix: str = "/v1", key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{pool.relay.base_url}{prefix}", api_key=key or pool.key, max_retries=0)


def post(pool: Pool, path: str, body: Any, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"authorization": f"Bearer {pool.key}", "content-type": "application/json", **headers}
    return httpx.post(f"{pool.relay.base_url}{path}", content=content, headers=headers, timeout=30)


def key_counters(pool: Pool) -> dict[str, Any]:
    return pool.user.ok("GET", f"/api/api-keys/{pool.key_id}")


# -- the stream default and the Accept rule -----------------------------------------------------------


def test_the_sdk_create_without_stream_gets_one_json_response(pool: Pool) -> None:
    """openai 3.57 omits `stream` and sends `Accept: application/json`: one JSON object comes back."""
    credential = pool.add_account("openai-responses")
    reply = sdk(pool).responses.create(model=MODEL, input="Say hello.")
    assert reply.object == "response" and reply.output_text.startswith("Hello from mock")
    (record,) = pool.upstream.requests_for(credential)
    assert record["headers"]["accept"] == "application/json"
    assert "stream" not in record["json"] and record["stream"] is False
    (log,) = pool.logs(expect=1)
    assert log["stream"] is False and log["status"] == "success"
    assert_billed(log, record["tokens"], model_prices(pool.admin, MODEL))


ACCEPT_CASES = {
    # name: (stream field or None, Accept header, answered as a stream)
    "absent, any": (None, "*/*", True),
    "absent, sse": (None, "text/event-stream", True),
    "absent, json": (None, "application/json", False),
    "absent, json or sse": (None, "application/json, text/event-stream", True),
    "false, sse": (False, "text/event-stream", False),
    "true, json": (True, "application/json", True),
}


@pytest.mark.parametrize("case", list(ACCEPT_CASES))
def test_stream_defaults_to_true_unless_the_client_asks_for_json(pool: Pool, case: str) -> None:
    stream, accept, streamed = ACCEPT_CASES[case]
    credential = pool.add_account("openai-responses")
    body: dict[str, Any] = {"model": MODEL, "input": "Say hello."}
    if stream is not None:
        body["stream"] = stream
    answer = post(pool, "/responses", body, accept=accept)
    assert answer.status_code == 200, answer.text
    (record,) = pool.upstream.requests_for(credential)
    assert record["stream"] is streamed
    if streamed:
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert "event: response.completed" in answer.text
        assert record["json"]["stream"] is True
    else:
        assert answer.json()["object"] == "response"
        assert record["json"].get("stream") in (None, False)
    # The client's body is otherwise what the upstream gets.
    assert {k: v for k, v in record["json"].items() if k != "stream"} == {
        "model": MODEL,
        "input": "Say hello.",
    }
    (log,) = pool.logs(expect=1)
    assert log["stream"] is streamed
    assert_billed(log, record["tokens"], model_prices(pool.admin, MODEL))


def test_the_sdk_stream_still_streams(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    with sdk(pool).responses.stream(model=MODEL, input="Say hello.") as stream:
        final = stream.get_final_response()
    assert final.output_text.startswith("Hello from mock")
    (record,) = pool.upstream.requests_for(credential)
    assert record["json"]["stream"] is True
    assert pool.logs(expect=1)[0]["stream"] is True


def test_the_model_defaults_as_documented(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    answer = post(pool, "/v1/responses", {"input": "Which model are you?", "stream": False})
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == "gpt-4"
    (record,) = pool.upstream.requests_for(credential)
    assert record["json"]["model"] == "gpt-4"
    (log,) = pool.logs(expect=1)
    assert log["model"] == "gpt-4"
    assert_billed(log, record["tokens"], model_prices(pool.admin, "gpt-4"))


# -- compaction and token counting --------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_compaction_is_proxied_billed_and_logged_on_every_prefix(pool: Pool, prefix: str) -> None:
    credential = pool.add_account("openai-responses")
    compacted = sdk(pool, prefix).responses.compact(model=MODEL, input=CONVERSATION, instructions="Be brief.")
    assert compacted.object == "response.compaction"
    assert compacted.output[-1].type == "compaction" and compacted.output[-1].encrypted_content
    assert [item.type for item in compacted.output[:-1]] == ["message", "message"]  # the user messages
    (record,) = pool.upstream.requests_for(credential)
    assert record["path"] == "/responses/compact"
    assert record["json"]["input"] == CONVERSATION and "stream" not in record["json"]
    assert compacted.usage.output_tokens == record["tokens"]["output_tokens"] > 0
    (log,) = pool.logs(expect=1)
    assert log["path"] == f"{prefix}/responses/compact" and log["status"] == "success"
    assert log["stream"] is False
    assert_billed(log, record["tokens"], model_prices(pool.admin, MODEL))
    key = key_counters(pool)
    assert key["request_count"] == 1 and key["used_tokens"] == log["total_tokens"]
    assert abs(key["used_cost"] - log["cost"]) < 1e-12


def test_compaction_goes_to_the_conversations_account(pool: Pool) -> None:
    """Codex compacts within a session: the sticky session sends it where the turns went."""
    for _ in range(3):
        pool.add_account("openai-responses", settle=False)
    pool.settle()
    client = sdk(pool)
    session = {"session-id": str(uuid.uuid4())}
    client.responses.create(model=MODEL, input=CONVERSATION, extra_headers=session)
    client.responses.compact(model=MODEL, input=CONVERSATION, extra_headers=session)
    served = {
        credential: [r["path"] for r in pool.upstream.requests_for(credential)]
        for credential in pool.accounts
    }
    assert sorted(paths for paths in served.values() if paths) == [["/responses", "/responses/compact"]]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_input_tokens_are_counted_free_and_logged(pool: Pool, prefix: str) -> None:
    credential = pool.add_account("openai-responses")
    counted = sdk(pool, prefix).responses.input_tokens.count(model=MODEL, input="x" * 40)
    assert counted.object == "response.input_tokens" and counted.input_tokens == 10
    assert [r["path"] for r in pool.upstream.requests_for(credential)] == ["/responses/input_tokens"]
    (log,) = pool.logs(expect=1)
    assert log["path"] == f"{prefix}/responses/input_tokens" and log["status"] == "success"
    assert (log["total_tokens"], log["cost"]) == (0, 0)
    assert key_counters(pool)["used_tokens"] == 0


def test_claude_model_counts_are_estimated_and_compaction_is_refused(pool: Pool) -> None:
    """A Claude model on the Responses route is served by a Claude account: its input count is estimated by
    the relay (no Claude call), and a compaction, an item only a Responses upstream makes, is refused."""
    credential = pool.add_account("claude-official")
    client = sdk(pool)
    counted = client.responses.input_tokens.count(model="claude-opus-4-8", input="x" * 40)
    assert counted.object == "response.input_tokens" and counted.input_tokens == 10
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.compact(model="claude-opus-4-8", input=CONVERSATION)
    assert refused.value.code == "unsupported_parameter" and "compact" in str(refused.value)
    assert pool.upstream.requests_for(credential) == []
    compact, count = pool.logs(expect=2)
    assert "estimated" in count["flags"] and count["account_id"] is None and count["total_tokens"] == 0
    assert compact["status_code"] == 400 and compact["total_tokens"] == 0
    assert key_counters(pool)["used_tokens"] == 0


# -- calls on a stored response -----------------------------------------------------------------------


def test_a_stored_response_is_retrieved_listed_and_deleted(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    client = sdk(pool, "/openai/v1")
    made = client.responses.create(model=MODEL, input="Remember me.")
    fetched = client.responses.retrieve(made.id)
    assert fetched.id == made.id and fetched.output_text == made.output_text
    items = client.responses.input_items.list(made.id)
    assert [item.content[0].text for item in items.data] == ["Remember me."]  # type: ignore[union-attr]
    client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError) as gone:
        client.responses.retrieve(made.id)
    assert gone.value.code == "not_found"

    # The last retrieve is the relay's own 404: the deleted id is forgotten, nobody is called.
    paths = [r["path"] for r in pool.upstream.requests_for(credential)]
    base = f"/responses/{made.id}"
    assert paths == ["/responses", base, f"{base}/input_items", base]
    logs = list(reversed(pool.logs(expect=5)))
    prefixed = f"/openai/v1{base}"
    assert [(log["method"], log["path"]) for log in logs] == [
        ("POST", "/openai/v1/responses"),
        ("GET", prefixed),
        ("GET", f"{prefixed}/input_items"),
        ("DELETE", prefixed),
        ("GET", prefixed),
    ]
    assert [log["status_code"] for log in logs] == [200, 200, 200, 200, 404]
    assert all(log["account_id"] == pool.accounts[credential] for log in logs[:4])
    assert logs[4]["account_id"] is None and logs[4]["status"] == "rejected"
    # Billed once: the response when it was made; the calls on it are free.
    assert [log["total_tokens"] > 0 for log in logs] == [True, False, False, False, False]
    key = key_counters(pool)
    assert key["used_tokens"] == logs[0]["total_tokens"]
    assert abs(key["used_cost"] - logs[0]["cost"]) < 1e-12


def test_each_response_id_goes_to_the_account_that_made_it(pool: Pool) -> None:
    for _ in range(2):
        pool.add_account("openai-responses", settle=False)
    pool.settle()
    client = sdk(pool)
    request_account = {
        record["request_id"]: credential
        for credential in pool.accounts
        for record in pool.upstream.requests_for(credential)
    }
    maker: dict[str, str] = {}  # response id -> the credential of the account that made it
    for n in range(6):
        raw = client.responses.with_raw_response.create(model=MODEL, input=f"Question number {n}.")
        made_by = {
            record["request_id"]: credential
            for credential in pool.accounts
            for record in pool.upstream.requests_for(credential)
        }
        maker[raw.parse().id] = made_by[raw.headers["x-request-id"]]  # the fake's id for the call
    assert not request_account and len(maker) == 6
    for response_id in maker:
        assert client.responses.retrieve(response_id).id == response_id
    for credential in pool.accounts:
        retrieved = {
            r["path"].rsplit("/", 1)[1]
            for r in pool.upstream.requests_for(credential)
            if r["method"] == "GET"
        }
        assert retrieved == {rid for rid, made_by in maker.items() if made_by == credential}
    for log in pool.logs(expect=12):
        if log["method"] == "GET":
            assert log["account_id"] == pool.accounts[maker[log["path"].rsplit("/", 1)[1]]]


def test_a_continuation_goes_to_the_account_that_made_the_previous_response(pool: Pool) -> None:
    for _ in range(2):
        pool.add_account("openai-responses", settle=False)
    pool.settle()
    client = sdk(pool)
    first = client.responses.with_raw_response.create(model=MODEL, input="Start a thread.")
    maker = next(
        credential
        for credential in pool.accounts
        if any(
            r["request_id"] == first.headers["x-request-id"] for r in pool.upstream.requests_for(credential)
        )
    )
    previous = first.parse().id
    for n in range(6):  # a string input has no session key: without the rule, a coin flip each time
        client.responses.create(model=MODEL, input=f"Go on ({n}).", previous_response_id=previous)
    continued = [
        credential
        for credential in pool.accounts
        for record in pool.upstream.requests_for(credential)
        if record["json"].get("previous_response_id") == previous
    ]
    assert continued == [maker] * 6
    assert all(log["account_id"] == pool.accounts[maker] for log in pool.logs(expect=7))


def test_a_background_response_is_cancelled_on_its_account(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    client = sdk(pool)
    queued = client.responses.create(model=MODEL, input="Take your time.", background=True)
    assert queued.status == "queued" and queued.usage is None
    cancelled = client.responses.cancel(queued.id)
    assert cancelled.id == queued.id and cancelled.status == "cancelled"
    paths = [r["path"] for r in pool.upstream.requests_for(credential)]
    assert paths == ["/responses", f"/responses/{queued.id}/cancel"]
    made, cancel = reversed(pool.logs(expect=2))
    assert cancel["path"] == f"/v1/responses/{queued.id}/cancel" and cancel["status"] == "success"
    assert "no_usage" in made["flags"] and made["cost"] == 0 and cancel["cost"] == 0


def test_an_upstream_refusal_on_a_stored_response_is_the_vendors_own(pool: Pool) -> None:
    pool.add_account("openai-responses")
    client = sdk(pool)
    done = client.responses.create(model=MODEL, input="Finished at once.")
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.cancel(done.id)  # only a background response can be cancelled
    assert "background=true" in str(refused.value.message)
    cancel = pool.logs(expect=2)[0]
    assert (cancel["status"], cancel["status_code"]) == ("error", 400)


def unknown_ids_cases(pool: Pool, make_user: Callable[..., Api]) -> list[tuple[str, str]]:
    """(key, id) pairs the relay must not serve: an id nobody made, an unstored one, another user's."""
    client = sdk(pool)
    unstored = client.responses.create(model=MODEL, input="Do not keep this.", store=False).id
    mine = client.responses.create(model=MODEL, input="Mine only.").id
    other = make_user()
    created = other.ok("POST", "/api/api-keys", json={"name": "other"})
    pool.admin.ok("PUT", f"/api/admin/api-keys/{created['id']}", json={"account_group_id": pool.group_id})
    return [(pool.key, "resp_nobodymadethis"), (pool.key, unstored), (created["key"], mine)]


def test_unknown_and_foreign_ids_are_404_without_calling_anyone(
    pool: Pool, make_user: Callable[..., Api]
) -> None:
    credential = pool.add_account("openai-responses")
    cases = unknown_ids_cases(pool, make_user)
    calls_before = len(pool.upstream.requests_for(credential))
    for key, response_id in cases:
        for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/cancel"), ("GET", "/input_items")):
            answer = httpx.request(
                method,
                f"{pool.relay.base_url}/v1/responses/{response_id}{suffix}",
                headers={"authorization": f"Bearer {key}"},
            )
            assert answer.status_code == 404, answer.text
            error = answer.json()["error"]
            assert error["code"] == "not_found" and response_id in error["message"]
            assert error["param"] is None and error["type"] == "not_found_error"
    assert len(pool.upstream.requests_for(credential)) == calls_before
    mine = pool.logs(expect=2 + 8)  # two creates, eight refusals with this key
    assert sorted(log["status_code"] for log in mine) == [200, 200] + [404] * 8


# -- the route's own errors ---------------------------------------------------------------------------


def assert_relay_error(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and error["param"] is None and error["message"] and error["type"], error


def test_the_relays_own_errors_use_the_routes_codes(pool: Pool) -> None:
    assert_relay_error(post(pool, "/v1/responses", {"model": MODEL}, authorization=""), 401, "unauthorized")
    assert_relay_error(
        post(pool, "/v1/responses", {"model": MODEL}, authorization="Bearer sk-" + "0" * 64),
        401,
        "unauthorized",
    )
    assert_relay_error(
        post(pool, "/v1/responses", {"model": MODEL, "input": "x"}), 503, "no_available_account"
    )
    assert_relay_error(post(pool, "/v1/responses", b"{not json"), 400, "invalid_request")
    claude_only, claude_only_id = pool.new_key(allowed_platforms="claude-official")
    assert_relay_error(
        post(pool, "/v1/responses", {"model": MODEL}, authorization=f"Bearer {claude_only}"), 403, "forbidden"
    )
    limited, limited_id = pool.new_key(rate_limit=1)
    pool.add_account("openai-responses")
    ok = post(pool, "/v1/responses", {"model": MODEL, "input": "x"}, authorization=f"Bearer {limited}")
    assert ok.status_code == 200, ok.text
    assert_relay_error(
        post(pool, "/v1/responses", {"model": MODEL, "input": "x"}, authorization=f"Bearer {limited}"),
        429,
        "rate_limited",
    )
    assert sorted(log["status_code"] for log in pool.logs(expect=2)) == [400, 503]
    assert [log["status_code"] for log in pool.logs(claude_only_id, expect=1)] == [403]
    assert sorted(log["status_code"] for log in pool.logs(limited_id, expect=2)) == [200, 429]


def test_an_unreachable_upstream_is_upstream_error(pool: Pool) -> None:
    pool.add_account("openai-responses", base_url="http://127.0.0.1:9")  # nothing listens on port 9
    with pytest.raises(openai.APIStatusError) as failed:
        sdk(pool).responses.create(model=MODEL, input="Anyone there?")
    assert failed.value.status_code == 502 and failed.value.code == "upstream_error"
    (log,) = pool.logs(expect=1)
    assert (log["status"], log["status_code"], log["cost"]) == ("error", 502, 0)


def test_the_sdk_reads_the_relays_errors(pool: Pool) -> None:
    with pytest.raises(openai.AuthenticationError) as refused:
        sdk(pool, key="sk-" + "1" * 64).responses.create(model=MODEL, input="x")
    assert refused.value.code == "unauthorized" and refused.value.type == "authentication_error"
    with pytest.raises(openai.InternalServerError) as nobody:
        sdk(pool).responses.compact(model=MODEL, input="x")
    assert nobody.value.status_code == 503 and nobody.value.code == "no_available_account"
    with pytest.raises(openai.APIStatusError) as wrong_method:
        sdk(pool).get("/responses/compact", cast_to=httpx.Response)
    assert wrong_method.value.status_code == 405 and wrong_method.value.code == "method_not_allowed"
    assert len(pool.logs(expect=2)) == 2  # the wrong key's refusal is logged without a key
