"""The scale-out stack for real: deploy/nginx.conf in front of two relays (two workers each) on one
PostgreSQL and one Redis, as deploy/compose.yaml runs it (see stack.py for what differs).

Through nginx: streams arrive event by event, headers with underscores and the client's address
reach the relay, a body over nginx's default limit and a Responses WebSocket turn pass, requests
spread over both relays and each ends as exactly one request-log row billed once, and a stopped
relay costs no request.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx
import orjson
import pytest
from alembic.script import ScriptDirectory
from websockets.sync.client import connect

from aiproxy.store.migrate import alembic_config

from ..support import free_port
from .files import dockerfile_stages, health_check_command
from .stack import Stack, running_stack

CLAUDE_BODY = {"model": "claude-opus-4-8", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
RESPONSES_MODEL = "gpt-5-codex"
GEMINI_PATH = "/gemini/v1beta/models/gemini-2.5-flash:generateContent"
GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


def claude(stack: Stack, key: str, **extra: object) -> httpx.Response:
    return httpx.post(
        f"{stack.url}/claude/v1/messages",
        json={**CLAUDE_BODY, **extra},
        headers={"x-api-key": key},
        timeout=30,
    )


def new_access_lines(stack: Stack, before: int, expect: int) -> list[str]:
    """nginx's access lines after the first `before`, once `expect` are there (a request's line is
    written as it ends, which may be a moment after its client has the answer)."""
    deadline = time.monotonic() + 10
    while len(lines := stack.nginx.access_lines()[before:]) < expect:
        assert time.monotonic() < deadline, lines
        time.sleep(0.05)
    time.sleep(0.2)  # and no more than that
    return stack.nginx.access_lines()[before:]


def upstream_of(line: str) -> str:
    """The relay that finally answered (after a refused one, nginx lists both: `a, b`)."""
    found = re.search(r" upstream=(.+?) upstream_status=", line)
    assert found is not None, line
    return found.group(1).split(",")[-1].strip()


def test_both_relays_started_together_on_the_empty_database(stack: Stack) -> None:
    head = ScriptDirectory.from_config(alembic_config(stack.database_url)).get_current_head()
    assert stack.schema_version() == head
    assert stack.admins() == 1  # the first admin was created once, not by each relay
    for base in (stack.url, *(relay.base_url for relay in stack.relays)):
        answer = httpx.get(f"{base}/ready", timeout=5)
        assert answer.status_code == 200 and answer.json()["status"] == "ready", (base, answer.text)


def test_a_stream_reaches_the_client_event_by_event(stack: Stack) -> None:
    key, key_id = stack.new_key("claude")
    stack.behave("claude", "slow", delay_ms=200, words=6, count=1)  # 200 ms after each SSE event
    started = time.monotonic()
    arrivals: list[tuple[str, float]] = []
    with httpx.stream(
        "POST",
        f"{stack.url}/claude/v1/messages",
        json={**CLAUDE_BODY, "stream": True},
        headers={"x-api-key": key},
        timeout=30,
    ) as answer:
        assert answer.status_code == 200
        for line in answer.iter_lines():
            if line.startswith("event: "):
                arrivals.append((line.removeprefix("event: "), time.monotonic() - started))
    names = [name for name, _ in arrivals]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    deltas = [at for name, at in arrivals if name == "content_block_delta"]
    assert len(deltas) == 6
    # Eight events follow the first delta, 200 ms apart at the vendor: a buffering proxy would hand
    # them over together at the end.
    assert arrivals[-1][1] - deltas[0] >= 1.0, arrivals
    (row,) = stack.rows(key_id, expect=1)
    assert row.status == "success" and row.stream


def test_headers_with_underscores_reach_the_relay_and_the_vendor(stack: Stack) -> None:
    key, key_id = stack.new_key("responses")
    session = f"session-{uuid.uuid4().hex}"
    answer = httpx.post(
        f"{stack.url}/v1/responses",
        json={"model": RESPONSES_MODEL, "input": "hi", "stream": False},
        headers={"authorization": f"Bearer {key}", "session_id": session, "conversation_id": session},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    (row,) = stack.rows(key_id, expect=1)
    assert orjson.loads(row.request_headers)["session_id"] == session
    (call,) = [c for c in stack.upstream_calls("responses") if c["headers"].get("session_id") == session]
    assert call["headers"]["conversation_id"] == session


def test_the_relay_logs_the_address_nginx_saw(stack: Stack) -> None:
    key, key_id = stack.new_key("claude")
    # A client on 127.0.0.2 that claims other addresses: nginx replaces them with the one it saw.
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport, timeout=30) as client:
        answer = client.post(
            f"{stack.url}/claude/v1/messages",
            json=CLAUDE_BODY,
            headers={"x-api-key": key, "x-forwarded-for": "203.0.113.7", "x-real-ip": "203.0.113.8"},
        )
    assert answer.status_code == 200, answer.text
    (row,) = stack.rows(key_id, expect=1)
    assert row.client_ip == "127.0.0.2"


def test_a_body_over_nginx_default_limit_is_relayed(stack: Stack) -> None:
    key, key_id = stack.new_key("claude")
    prompt = "relay " * 500_000  # 3 MB; nginx refuses more than 1 MB unless told otherwise
    answer = claude(stack, key, messages=[{"role": "user", "content": prompt}])
    assert answer.status_code == 200, answer.text[:300]
    (row,) = stack.rows(key_id, expect=1)
    assert row.status == "success"
    (call,) = [c for c in stack.upstream_calls("claude") if prompt in orjson.dumps(c.get("json")).decode()]
    assert call["status"] == 200


def test_a_responses_websocket_turn_passes_through_nginx(stack: Stack) -> None:
    key, key_id = stack.new_key("responses")
    url = stack.url.replace("http://", "ws://", 1) + "/v1/responses"
    headers = {"authorization": f"Bearer {key}", "openai-beta": "responses_websockets=2026-02-06"}
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        for _ in range(2):  # two turns on one socket
            ws.send(orjson.dumps({"type": "response.create", "model": RESPONSES_MODEL, "input": [item]}))
            events = [orjson.loads(ws.recv(timeout=15))]
            while events[-1]["type"] not in ("response.completed", "response.failed", "error"):
                events.append(orjson.loads(ws.recv(timeout=15)))
            assert events[-1]["type"] == "response.completed", events[-1]
    rows = stack.rows(key_id, expect=2)
    assert [(r.method, r.status) for r in rows] == [("WS", "success")] * 2
    assert stack.billed(key_id) == 2


def test_requests_spread_over_both_relays_and_each_is_one_row_billed_once(stack: Stack) -> None:
    claude_key, claude_id = stack.new_key("claude")
    gemini_key, gemini_id = stack.new_key("gemini")
    vendor_before = {family: len(stack.upstream_calls(family)) for family in ("claude", "gemini")}
    lines_before = len(stack.nginx.access_lines())
    for i in range(8):
        with httpx.stream(
            "POST",
            f"{stack.url}/claude/v1/messages",
            json={**CLAUDE_BODY, "stream": i % 2 == 1},
            headers={"x-api-key": claude_key},
            timeout=30,
        ) as answer:
            answer.read()
            assert answer.status_code == 200
    for _ in range(4):  # the key in the query string, as Gemini clients may send it
        answer = httpx.post(f"{stack.url}{GEMINI_PATH}?key={gemini_key}", json=GEMINI_BODY, timeout=30)
        assert answer.status_code == 200, answer.text
    lines = new_access_lines(stack, lines_before, expect=12)
    assert len(lines) == 12
    served_by = Counter(stack.relay_addresses()[upstream_of(line)] for line in lines)
    assert set(served_by) == {"relay1", "relay2"}, served_by
    for key_id, sent in ((claude_id, 8), (gemini_id, 4)):
        rows = stack.rows(key_id, expect=sent)
        assert len(rows) == sent and len({r.request_id for r in rows}) == sent
        assert {r.status for r in rows} == {"success"}
        assert stack.billed(key_id) == sent
    # Each reached the vendor once, with the credential either relay decrypted (one secret key).
    assert len(stack.upstream_calls("claude")) - vendor_before["claude"] == 8
    assert len(stack.upstream_calls("gemini")) - vendor_before["gemini"] == 4
    logged = stack.nginx.access_log.read_text() + stack.nginx.output()
    assert gemini_key not in logged and claude_key not in logged


def test_metrics_stay_on_each_relay(stack: Stack) -> None:
    assert httpx.get(f"{stack.url}/metrics", timeout=5).status_code == 404
    for relay in stack.relays:
        answer = httpx.get(f"{relay.base_url}/metrics", timeout=5)
        assert answer.status_code == 200 and "aiproxy_requests" in answer.text


def test_the_image_health_check_tells_a_live_relay_from_a_dead_one(stack: Stack) -> None:
    command = health_check_command(dockerfile_stages()[-1])
    assert command[0] == "python"
    command = [sys.executable, *command[1:]]

    def check(port: int) -> int:
        env = {**os.environ, "AIPROXY_PORT": str(port)}
        return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode

    assert check(stack.relays[0].port) == 0
    assert check(free_port()) != 0


def test_a_stopped_relay_costs_no_request(stack: Stack) -> None:
    """The rolling-upgrade step: one relay stops (SIGTERM, as `docker compose up` recreating it does);
    nginx sends every request to the other, including those that first met the closed port."""
    key, key_id = stack.new_key("claude")
    stopped = stack.relays[0]
    stopped.stop()
    lines_before = len(stack.nginx.access_lines())
    for _ in range(6):
        answer = claude(stack, key)
        assert answer.status_code == 200, answer.text
    lines = new_access_lines(stack, lines_before, expect=6)
    assert len(lines) == 6
    assert {stack.relay_addresses()[upstream_of(line)] for line in lines} == {"relay2"}
    assert any(f"127.0.0.1:{stopped.port}," in line for line in lines), "nginx never met the stopped relay"
    rows = stack.rows(key_id, expect=6)
    assert len(rows) == 6 and stack.billed(key_id) == 6
