"""The OpenAI Responses API over WebSocket (as Codex CLI uses it), through the real relay.

Clients are the `websockets` library (what uvicorn serves with) and the openai SDK's
`responses.connect()`. Every turn is one request-log row, billed at the usage its
`response.completed` reported; the fake upstream records every vendor socket and every turn.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from .conftest import Pool, Upstream
from .helpers import assert_billed, model_prices
from .test_oauth_serving import OAuthSetup, current_access, oauth_relay, setup

__all__ = ["oauth_relay", "setup"]  # fixtures of the subscription-account test

MODEL = "gpt-5-codex"
PATHS = ("/responses", "/v1/responses", "/openai/responses", "/openai/v1/responses")
TERMINAL = ("response.completed", "response.incomplete", "response.failed", "error")
DEVELOPER = {
    "type": "message",
    "role": "developer",
    "content": [{"type": "input_text", "text": "You are a coding agent running in the Codex CLI, be brief."}],
}


def user_item(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def codex_headers(key: str) -> dict[str, str]:
    session = str(uuid.uuid4())
    return {
        "authorization": f"Bearer {key}",
        "openai-beta": "responses_websockets=2026-02-06",
        "originator": "codex_exec",
        "user-agent": "codex_exec/0.169.0 (Debian 12.0.0; x86_64) xterm (codex_exec; 0.169.0)",
        "session-id": session,
        "thread-id": session,
        "x-client-request-id": session,
    }


@contextlib.contextmanager
def open_socket(base_url: str, path: str, headers: dict[str, str]) -> Iterator[ClientConnection]:
    url = base_url.replace("http://", "ws://", 1) + path
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        yield ws


def socket(
    pool: Pool, path: str = "/v1/responses", headers: dict[str, str] | None = None
) -> contextlib.AbstractContextManager[ClientConnection]:
    return open_socket(pool.relay.base_url, path, headers or codex_headers(pool.key))


def receive(ws: ClientConnection, timeout: float = 15) -> dict[str, Any]:
    return orjson.loads(ws.recv(timeout=timeout))


def turn(ws: ClientConnection, **body: Any) -> list[dict[str, Any]]:
    """One `response.create` and its events, up to the last one."""
    ws.send(orjson.dumps({"type": "response.create", "model": MODEL, "store": False, **body}).decode())
    events = [receive(ws)]
    while events[-1]["type"] not in TERMINAL:
        events.append(receive(ws))
    return events


def warm_up(ws: ClientConnection) -> str:
    events = turn(ws, input=[DEVELOPER], generate=False, stream=True)
    assert [e["type"] for e in events] == ["response.created", "response.completed"]
    assert events[-1]["response"]["output"] == []
    return events[-1]["response"]["id"]


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


def websocket_upstream(pool: Pool, enabled: bool) -> None:
    pool.admin.ok("PUT", "/api/admin/configs", json={"key": "websocket_upstream", "value": enabled})
    pool.settle()


@pytest.fixture
def http_bridge(pool: Pool) -> Iterator[None]:
    """Every turn bridged to HTTP SSE (the vendor's WebSocket switched off)."""
    websocket_upstream(pool, False)
    try:
        yield
    finally:
        websocket_upstream(pool, True)


def connections(pool: Pool, credential: str) -> list[dict[str, Any]]:
    return [r for r in pool.upstream.requests_for(credential) if r["endpoint"] == "responses.websocket"]


def upstream_turns(pool: Pool, credential: str) -> list[dict[str, Any]]:
    return [r for r in pool.upstream.requests_for(credential) if r["endpoint"] == "responses"]


def concurrency(pool: Pool) -> int:
    return pool.admin.ok("GET", f"/api/admin/users/{pool.user_id}/concurrency")["current"]


def key_counters(pool: Pool) -> dict[str, Any]:
    return pool.user.ok("GET", f"/api/api-keys/{pool.key_id}")


def assert_rows_billed(pool: Pool, rows: list[dict[str, Any]], records: list[dict[str, Any]]) -> None:
    """Rows (oldest first) carry the tokens the upstream reported; the key counted each once."""
    prices = model_prices(pool.admin, MODEL)
    for row, record in zip(rows, records, strict=True):
        assert row["status"] == "success" and row["stream"] is True, row
        assert_billed(row, record["tokens"], prices)
    counters = key_counters(pool)
    assert counters["used_tokens"] == sum(r["total_tokens"] for r in pool.logs(expect=len(rows)))


# -- the handshake -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "header"),
    [
        ("/responses", "authorization"),
        ("/v1/responses", "x-api-key"),
        ("/openai/responses", "api-key"),
        ("/openai/v1/responses", "authorization"),
    ],
)
def test_every_responses_path_and_key_header_opens_a_socket(pool: Pool, path: str, header: str) -> None:
    credential = pool.add_account("openai-responses")
    value = f"Bearer {pool.key}" if header == "authorization" else pool.key
    with socket(pool, path, {header: value, "user-agent": "ws-test"}) as ws:
        events = turn(ws, input="hello there")
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
    assert text_of(events).startswith("Hello from mock")
    (row,) = pool.logs(expect=1)
    assert (row["path"], row["account_id"]) == (path, pool.accounts[credential])
    assert_rows_billed(pool, [row], upstream_turns(pool, credential))
    assert pool.key not in str(pool.upstream.requests_for(credential))  # the account's key upstream


def test_a_refused_handshake_is_an_http_error_and_one_row(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    key, key_id = pool.new_key()
    pool.user.ok("PUT", f"/api/api-keys/{key_id}", json={"status": "disabled"})
    with pytest.raises(InvalidStatus) as refused, socket(pool, headers={"authorization": f"Bearer {key}"}):
        pass
    response = refused.value.response
    assert response.status_code == 401
    error = orjson.loads(response.body)["error"]
    assert error["type"] == "authentication_error" and error["message"] == "API Key 已被禁用"
    (row,) = pool.logs(key_id, expect=1)
    assert (row["status"], row["status_code"], row["path"]) == ("rejected", 401, "/v1/responses")
    assert row["total_tokens"] == 0 and row["cost"] == 0
    marker = f"ws-{uuid.uuid4().hex[:8]}"
    with pytest.raises(InvalidStatus) as anonymous, socket(pool, headers={"user-agent": marker}):
        pass
    assert anonymous.value.response.status_code == 401
    deadline = time.monotonic() + 10
    while True:
        rows = pool.admin.ok("GET", "/api/admin/logs?status=rejected&page_size=100")["items"]
        mine = [r for r in rows if r["user_agent"] == marker]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [(r["status_code"], r["api_key_id"]) for r in mine] == [(401, None)]
    assert connections(pool, credential) == []


def test_the_client_filter_judges_the_handshake(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    config = {"filter_mode": "strict", "allowed_clients": ["codex-cli"], "default_allow": False}
    pool.admin.ok("PUT", "/api/admin/client-filter/config", json={"filter_enabled": True, **config})
    pool.settle()
    try:
        with (
            pytest.raises(InvalidStatus) as refused,
            socket(pool, headers={"authorization": f"Bearer {pool.key}"}),
        ):
            pass
        with socket(pool, headers={**codex_headers(pool.key), "x-codex-turn-metadata": "{}"}) as ws:
            events = turn(ws, input=[DEVELOPER, user_item("say hi")])
    finally:
        off = {
            "filter_enabled": False,
            "filter_mode": "simple",
            "allowed_clients": [],
            "default_allow": False,
        }
        pool.admin.ok("PUT", "/api/admin/client-filter/config", json=off)
        pool.settle()
    assert refused.value.response.status_code == 403
    assert orjson.loads(refused.value.response.body)["error"]["message"] == "当前客户端不允许访问"
    assert events[-1]["type"] == "response.completed"
    refusal, served = reversed(pool.logs(expect=2))
    assert (refusal["status"], refusal["status_code"], refusal["client_type"]) == ("rejected", 403, "")
    assert "client filter" in refusal["error_message"]
    assert served["client_type"] == "codex-cli"
    assert_rows_billed(pool, [served], upstream_turns(pool, credential))


def test_every_turn_is_admitted_on_its_own(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    key, key_id = pool.new_key(rate_limit=1)  # one request a minute
    with socket(pool, headers=codex_headers(key)) as ws:
        first = turn(ws, input="one")
        second = turn(ws, input="two", previous_response_id=first[-1]["response"]["id"])
    assert first[-1]["type"] == "response.completed"
    (refusal,) = second
    assert (refusal["type"], refusal["status"]) == ("error", 429)
    assert refusal["error"]["message"] == "请求过于频繁，请稍后再试"
    rows = list(reversed(pool.logs(key_id, expect=2)))
    assert [(r["status"], r["status_code"]) for r in rows] == [("success", 200), ("rejected", 429)]
    assert_billed(rows[0], upstream_turns(pool, credential)[0]["tokens"], model_prices(pool.admin, MODEL))
    assert rows[1]["total_tokens"] == 0 and len(upstream_turns(pool, credential)) == 1


# -- turns over the vendor's WebSocket --------------------------------------------------------------


def test_codex_warm_up_then_turns_over_one_vendor_socket(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    with socket(pool) as ws:
        warm = warm_up(ws)
        second = turn(ws, input=[user_item("say hi")], previous_response_id=warm, stream=True)
        third = turn(ws, input=[user_item("again")], previous_response_id=second[-1]["response"]["id"])
    assert text_of(second).startswith("Hello from mock") and third[-1]["type"] == "response.completed"
    assert len(connections(pool, credential)) == 1  # one vendor socket for the client socket
    records = upstream_turns(pool, credential)
    assert [r["method"] for r in records] == ["WS"] * 3
    assert [r["json"].get("previous_response_id") for r in records] == [
        None,
        warm,
        second[-1]["response"]["id"],
    ]
    assert records[0]["json"]["generate"] is False
    assert records[1]["json"]["input"] == [user_item("say hi")]  # only the new items: the vendor has the rest
    rows = list(reversed(pool.logs(expect=3)))
    assert {r["account_id"] for r in rows} == {pool.accounts[credential]}
    assert rows[0]["output_tokens"] == 0 and rows[0]["input_tokens"] > 0  # the warm-up, at its usage
    assert_rows_billed(pool, rows, records)
    assert key_counters(pool)["request_count"] == 3
    assert concurrency(pool) == 0


def test_a_tool_call_turn_and_its_output(pool: Pool) -> None:
    credential = pool.add_account("openai")  # a plain OpenAI API key speaks the WebSocket too
    tools = [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}}]
    with socket(pool, "/openai/v1/responses") as ws:
        called = turn(ws, input="list files", tools=tools, tool_choice="required")
        call = next(e["item"] for e in called if e["type"] == "response.output_item.done")
        assert call["type"] == "function_call" and call["name"] == "exec_command"
        output = {"type": "function_call_output", "call_id": call["call_id"], "output": "a.txt"}
        answered = turn(ws, input=[output], previous_response_id=called[-1]["response"]["id"], tools=tools)
    assert text_of(answered).startswith("Hello from mock")
    records = upstream_turns(pool, credential)
    assert [r["path"] for r in connections(pool, credential)] == ["/v1/responses"]
    assert records[1]["json"]["input"] == [output]
    assert_rows_billed(pool, list(reversed(pool.logs(expect=2))), records)


def test_one_socket_keeps_one_account_and_two_sockets_may_use_two(pool: Pool) -> None:
    first = pool.add_account("openai-responses", max_concurrency=1, settle=False)
    second = pool.add_account("openai-responses", max_concurrency=1)
    for credential in (first, second):
        pool.upstream.behave(credential, "slow", delay_ms=60, count=1)
    with socket(pool) as a, socket(pool) as b:
        results: dict[str, list[dict[str, Any]]] = {}
        worker = threading.Thread(target=lambda: results.setdefault("a", turn(a, input="one")))
        worker.start()
        results["b"] = turn(b, input="two")  # both accounts busy at once: each socket took one
        worker.join()
        a_rest = [turn(a, input="more", previous_response_id=results["a"][-1]["response"]["id"])]
        a_rest.append(turn(a, input="more", previous_response_id=a_rest[-1][-1]["response"]["id"]))
        b_rest = turn(b, input="more", previous_response_id=results["b"][-1]["response"]["id"])
    assert all(t[-1]["type"] == "response.completed" for t in [results["a"], results["b"], *a_rest, b_rest])
    rows = pool.logs(expect=5)
    by_account: dict[int, int] = {}
    for row in rows:
        by_account[row["account_id"]] = by_account.get(row["account_id"], 0) + 1
    assert sorted(by_account.values()) == [2, 3]  # socket a: 3 turns on one account, b: 2 on the other
    assert [len(connections(pool, c)) for c in (first, second)] == [1, 1]
    assert sum(len(upstream_turns(pool, c)) for c in (first, second)) == 5
    assert concurrency(pool) == 0


def test_a_vendor_error_before_the_first_event_of_the_first_turn_fails_over(pool: Pool) -> None:
    limited = pool.add_account("openai-responses", priority=1000, weight=1000, settle=False)
    spare = pool.add_account("openai-responses", priority=1, weight=1)  # tried second (all but surely)
    pool.upstream.behave(limited, "429")
    with socket(pool) as ws:
        events = turn(ws, input="hello")
        again = turn(ws, input="more", previous_response_id=events[-1]["response"]["id"])
    assert events[-1]["type"] == again[-1]["type"] == "response.completed"
    assert [r["status"] for r in upstream_turns(pool, limited)] == [429]  # refused in an error frame
    assert len(upstream_turns(pool, spare)) == 2 and len(connections(pool, spare)) == 1
    rows = list(reversed(pool.logs(expect=2)))
    assert [(r["account_id"], r["retries"]) for r in rows] == [
        (pool.accounts[spare], 1),
        (pool.accounts[spare], 0),
    ]
    assert pool.account(limited)["status"] == "rate_limited"
    assert_rows_billed(pool, rows, upstream_turns(pool, spare))


def test_a_vendor_socket_closed_between_turns_is_replaced_and_the_history_replayed(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    pool.upstream.behave(credential, "ok", path="#websocket-close", count=1)
    with socket(pool) as ws:
        first = turn(ws, input=[DEVELOPER, user_item("one")])  # the vendor closes its socket after it
        second = turn(ws, input=[user_item("two")], previous_response_id=first[-1]["response"]["id"])
        third = turn(ws, input=[user_item("three")], previous_response_id=second[-1]["response"]["id"])
    assert all(t[-1]["type"] == "response.completed" for t in (first, second, third))
    assert len(connections(pool, credential)) == 2  # the first, then a new one for the third turn
    records = [r for r in pool.upstream.requests_for(credential) if r["endpoint"] == "responses"]
    assert [r["method"] for r in records] == ["WS", "POST", "WS"]  # the second went over HTTP
    reply_one = next(e["item"] for e in first if e["type"] == "response.output_item.done")
    reply_two = next(e["item"] for e in second if e["type"] == "response.output_item.done")
    history = [DEVELOPER, user_item("one"), {k: v for k, v in reply_one.items() if k != "id"}]
    assert records[1]["json"]["input"] == [*history, user_item("two")]
    third_body = records[2]["json"]  # made on HTTP: the new vendor socket gets it written out
    assert "previous_response_id" not in third_body
    reply_two_input = {k: v for k, v in reply_two.items() if k != "id"}
    assert third_body["input"] == [*history, user_item("two"), reply_two_input, user_item("three")]
    rows = list(reversed(pool.logs(expect=3)))
    assert {r["account_id"] for r in rows} == {pool.accounts[credential]}
    assert_rows_billed(pool, rows, records)


def test_a_second_turn_while_one_runs_is_an_error_frame(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    pool.upstream.behave(credential, "slow", delay_ms=80, count=1)
    with socket(pool) as ws:
        ws.send(orjson.dumps({"type": "response.create", "model": MODEL, "input": "slow"}).decode())
        assert receive(ws)["type"] == "response.created"
        ws.send(orjson.dumps({"type": "response.create", "model": MODEL, "input": "eager"}).decode())
        events = [receive(ws)]
        while events[-1]["type"] != "response.completed":
            events.append(receive(ws))
        refusals = [e for e in events if e["type"] == "error"]
        assert [(e["status"], e["error"]["code"]) for e in refusals] == [(400, "response_in_progress")]
        assert turn(ws, input="after")[-1]["type"] == "response.completed"  # still usable
    rows = list(reversed(pool.logs(expect=3)))
    assert sorted((r["status"], r["status_code"]) for r in rows) == [
        ("rejected", 400),
        ("success", 200),
        ("success", 200),
    ]
    served = [r for r in rows if r["status"] == "success"]
    assert_rows_billed(pool, served, upstream_turns(pool, credential))


def test_malformed_frames_are_error_frames_and_rows(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    with socket(pool) as ws:
        ws.send("{not json")
        bad = receive(ws)
        ws.send(orjson.dumps({"type": "response.cancel"}).decode())
        unknown = receive(ws)
        events = turn(ws, input="fine")
    assert (bad["type"], bad["status"], bad["error"]["code"]) == ("error", 400, "invalid_json")
    assert unknown["error"]["code"] == "unsupported_event_type"
    assert events[-1]["type"] == "response.completed"
    rows = list(reversed(pool.logs(expect=3)))
    assert [(r["status"], r["status_code"]) for r in rows] == [
        ("rejected", 400),
        ("rejected", 400),
        ("success", 200),
    ]
    assert_rows_billed(pool, rows[2:], upstream_turns(pool, credential))


def test_the_client_leaving_mid_turn_frees_its_slots_and_logs_once(pool: Pool) -> None:
    credential = pool.add_account("openai-responses", max_concurrency=1)
    pool.admin.ok("PUT", f"/api/admin/users/{pool.user_id}", json={"max_concurrency": 1})
    pool.upstream.behave(credential, "slow", delay_ms=300, count=1)
    with socket(pool) as ws:
        ws.send(orjson.dumps({"type": "response.create", "model": MODEL, "input": "long"}).decode())
        assert receive(ws)["type"] == "response.created"
    (row,) = pool.logs(expect=1)
    assert (row["status"], row["status_code"]) == ("client_gone", 200)  # its first event had gone out
    assert row["account_id"] == pool.accounts[credential] and row["total_tokens"] == 0  # no usage came
    counters = key_counters(pool)  # a key counts what it was served: here nothing it could bill
    assert (counters["request_count"], counters["used_tokens"]) == (0, 0)
    deadline = time.monotonic() + 5
    while concurrency(pool) != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert concurrency(pool) == 0
    with socket(pool) as ws:  # the account's slot is free again too
        assert turn(ws, input="next")[-1]["type"] == "response.completed"
    assert len(pool.logs(expect=2)) == 2


def test_the_vendor_socket_breaking_mid_turn_ends_the_client_socket(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    with socket(pool) as ws:
        warm = warm_up(ws)
        pool.upstream.behave(credential, "cut", count=1)
        events = turn(ws, input="cut me", previous_response_id=warm)
        assert events[-1]["error"]["code"] == "stream_incomplete"
        assert any(e["type"] == "response.output_text.delta" for e in events)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    rows = list(reversed(pool.logs(expect=2)))
    assert [(r["status"], r["status_code"]) for r in rows] == [("success", 200), ("truncated", 200)]
    assert rows[1]["total_tokens"] == 0  # the usage never came
    assert_rows_billed(pool, rows[:1], upstream_turns(pool, credential)[:1])
    assert concurrency(pool) == 0


def test_an_idle_socket_is_closed_and_its_turns_stay_logged(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    pool.admin.ok("PUT", "/api/admin/configs", json={"key": "websocket_idle_timeout", "value": 5})
    try:
        with socket(pool) as ws:
            assert turn(ws, input="then nothing")[-1]["type"] == "response.completed"
            started = time.monotonic()
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=15)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
        assert 4 < time.monotonic() - started < 12
    finally:
        pool.admin.ok("PUT", "/api/admin/configs", json={"key": "websocket_idle_timeout", "value": 600})
    assert_rows_billed(pool, pool.logs(expect=1), upstream_turns(pool, credential))
    assert concurrency(pool) == 0


# -- turns bridged to HTTP ----------------------------------------------------------------------------


@pytest.mark.usefixtures("http_bridge")
def test_the_http_bridge_answers_the_warm_up_and_replays_the_history(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    with socket(pool) as ws:
        warm = warm_up(ws)
        second = turn(ws, input=[user_item("say hi")], previous_response_id=warm, stream=True)
        third = turn(ws, input=[user_item("again")], previous_response_id=second[-1]["response"]["id"])
    assert text_of(third).startswith("Hello from mock")
    assert connections(pool, credential) == []
    records = pool.upstream.requests_for(credential)
    assert [(r["method"], r["path"]) for r in records] == [("POST", "/responses")] * 2  # no warm-up upstream
    for record in records:
        assert "previous_response_id" not in record["json"] and "generate" not in record["json"]
    assert records[0]["json"]["input"] == [DEVELOPER, user_item("say hi")]
    reply = next(e["item"] for e in second if e["type"] == "response.output_item.done")
    replayed = {k: v for k, v in reply.items() if k != "id"}
    assert records[1]["json"]["input"] == [DEVELOPER, user_item("say hi"), replayed, user_item("again")]
    rows = list(reversed(pool.logs(expect=3)))
    assert rows[0]["total_tokens"] == 0 and "local_warmup" in rows[0]["flags"]
    assert {r["account_id"] for r in rows} == {pool.accounts[credential]}
    assert_rows_billed(pool, rows[1:], records)
    assert key_counters(pool)["request_count"] == 3


@pytest.mark.usefixtures("http_bridge")
def test_a_bridged_turn_cut_mid_stream_leaves_the_socket_usable(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    pool.upstream.behave(credential, "cut", count=1)
    with socket(pool) as ws:
        cut = turn(ws, input="cut me")
        after = turn(ws, input="and now")
    assert cut[-1]["type"] == "error" and cut[-1]["error"]["code"] == "stream_incomplete"
    assert any(e["type"] == "response.output_text.delta" for e in cut)
    assert after[-1]["type"] == "response.completed"
    rows = list(reversed(pool.logs(expect=2)))
    assert (rows[0]["status"], rows[0]["total_tokens"]) == ("truncated", 0)  # no usage before the end
    assert_rows_billed(pool, rows[1:], pool.upstream.requests_for(credential)[1:])
    assert concurrency(pool) == 0


def test_a_refused_vendor_socket_falls_back_to_http_for_that_account(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    pool.upstream.behave(credential, "500", path="#websocket", count=1)
    with socket(pool) as ws:
        warm = warm_up(ws)  # answered by the bridge: the vendor socket was refused
        second = turn(ws, input=[user_item("say hi")], previous_response_id=warm)
    assert text_of(second).startswith("Hello from mock")
    assert [r["status"] for r in connections(pool, credential)] == [500]
    (record,) = [r for r in pool.upstream.requests_for(credential) if r["method"] == "POST"]
    assert record["json"]["input"] == [DEVELOPER, user_item("say hi")]
    rows = list(reversed(pool.logs(expect=2)))
    assert_rows_billed(pool, rows[1:], [record])


def test_the_openai_sdk_responses_connection(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    client = openai.OpenAI(base_url=f"{pool.relay.base_url}/v1", api_key=pool.key, max_retries=0)
    with client.responses.connect() as connection:
        connection.response.create(model=MODEL, input="hello from the SDK")
        events = []
        for event in connection:
            events.append(event)
            if event.type in TERMINAL:
                break
    assert events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta").startswith("Hello")
    assert_rows_billed(pool, pool.logs(expect=1), upstream_turns(pool, credential))


def test_a_chatgpt_subscription_account_is_bridged_to_http(setup: OAuthSetup, upstream: Upstream) -> None:
    account = setup.onboard("openai")
    token = current_access(upstream, "openai")
    with open_socket(setup.relay.base_url, "/v1/responses", codex_headers(setup.key)) as ws:
        warm = warm_up(ws)
        second = turn(ws, input=[user_item("say hi")], previous_response_id=warm)
    assert text_of(second).startswith("Hello from mock")
    (record,) = upstream.requests_for(token)  # the warm-up was answered by the relay
    assert (record["method"], record["endpoint"]) == ("POST", "responses")
    body = record["json"]
    assert "previous_response_id" not in body and "generate" not in body
    assert body["input"] == [DEVELOPER, user_item("say hi")] and body["store"] is False
    assert record["headers"]["authorization"] == f"Bearer {token}"
    warm_row, served = reversed(setup.logs(expect=2))
    assert warm_row["total_tokens"] == 0 and "local_warmup" in warm_row["flags"]
    assert {warm_row["account_id"], served["account_id"]} == {account["id"]}
    assert_billed(served, record["tokens"], model_prices(setup.admin, MODEL))


def test_turns_served_by_a_claude_account_are_converted_with_the_history_replayed(pool: Pool) -> None:
    """Codex on a Claude model: every turn goes over HTTP to the Claude account, converted; the warm-up is
    answered by the relay, and a turn continuing a response carries the history written out."""
    credential = pool.add_account("claude-official")
    claude_model = "claude-opus-4-8"
    with socket(pool) as ws:
        warm = turn(ws, model=claude_model, input=[DEVELOPER], generate=False, stream=True)
        second = turn(
            ws,
            model=claude_model,
            input=[user_item("say hi")],
            previous_response_id=warm[-1]["response"]["id"],
        )
        third = turn(
            ws,
            model=claude_model,
            input=[user_item("again")],
            previous_response_id=second[-1]["response"]["id"],
        )
    assert warm[-1]["response"]["output"] == [] and third[-1]["type"] == "response.completed"
    assert text_of(second).startswith("Hello from mock")
    records = pool.upstream.requests_for(credential)
    assert [(r["method"], r["path"]) for r in records] == [
        ("POST", "/v1/messages")
    ] * 2  # no warm-up upstream
    system = records[0]["json"]["system"]
    assert "Codex CLI" in (system if isinstance(system, str) else orjson.dumps(system).decode())
    assert [m["role"] for m in records[0]["json"]["messages"]] == ["user"]
    assert [m["role"] for m in records[1]["json"]["messages"]] == ["user", "assistant", "user"]
    assert text_of(second) in orjson.dumps(records[1]["json"]["messages"][1]).decode()
    rows = list(reversed(pool.logs(expect=3)))
    assert "local_warmup" in rows[0]["flags"] and rows[0]["total_tokens"] == 0
    prices = model_prices(pool.admin, claude_model)
    for row, record in zip(rows[1:], records, strict=True):
        assert row["status"] == "success" and row["account_id"] == pool.accounts[credential], row
        assert_billed(row, record["tokens"], prices)
    assert key_counters(pool)["request_count"] == 3
    assert concurrency(pool) == 0
