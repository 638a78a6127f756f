"""Streams: cut upstreams, vanished clients, sticky sessions."""

from __future__ import annotations

import asyncio
import time

import anthropic
import httpx
import pytest

from .conftest import Pool
from .helpers import assert_billed, model_prices

BODY = {
    "model": "claude-opus-4-8",
    "max_tokens": 50,
    "stream": True,
    "messages": [{"role": "user", "content": "Tell me a long story about relays and pools."}],
}


def test_cut_stream_is_billed_for_what_was_seen(pool: Pool) -> None:
    credential = pool.add_account()
    pool.upstream.behave(credential, "cut", count=1)
    client = anthropic.Anthropic(base_url=f"{pool.relay.base_url}/claude", api_key=pool.key, max_retries=0)
    with (
        pytest.raises(anthropic.APIError),
        client.messages.stream(**{k: v for k, v in BODY.items() if k != "stream"}) as stream,
    ):
        stream.get_final_message()
    assert len(pool.upstream.requests_for(credential)) == 1
    (log,) = pool.logs(expect=1)
    assert log["status"] == "truncated" and "truncated" in log["flags"]
    # message_start told the prompt size before the cut: that much is billed.
    assert log["input_tokens"] > 0 and log["cost"] > 0


@pytest.mark.parametrize(
    ("account_type", "path", "body", "last_event"),
    [
        ("claude-official", "/claude/v1/messages", BODY, b"event: message_stop"),
        (
            "openai",
            "/v1/responses",
            {"model": "gpt-5-codex", "stream": True, "input": "Tell me a story."},
            b"event: response.completed",
        ),
    ],
    ids=["claude", "responses"],
)
def test_a_client_closing_after_the_last_event_is_served_not_gone(
    pool: Pool, account_type: str, path: str, body: dict[str, object], last_event: bytes
) -> None:
    """A relayed stream's last event is the whole answer: a client that closes right after it (Codex
    exits once it has `response.completed`), before a slow upstream ends its stream, was served."""
    credential = pool.add_account(account_type)
    pool.upstream.behave(credential, "slow", delay_ms=300)  # the mock also waits after its last event
    received = b""
    with httpx.stream(
        "POST", pool.relay.base_url + path, json=body, headers={"x-api-key": pool.key}
    ) as reply:
        assert reply.status_code == 200
        for chunk in reply.iter_raw():
            received += chunk
            if last_event in received:
                break  # hang up before the upstream's end
    (record,) = pool.upstream.requests_for(credential)
    (log,) = pool.logs(expect=1)
    assert log["status"] == "success" and "client_gone" not in log["flags"], log
    assert_billed(log, record["tokens"], model_prices(pool.admin, record["model"]))


def test_two_hundred_abandoned_streams_leave_no_slot_held(pool: Pool) -> None:
    # Room for a few waves whose hang-ups the relay has not processed yet; tightened to 5 below.
    credential = pool.add_account(max_concurrency=20)
    pool.admin.ok("PUT", f"/api/admin/users/{pool.user_id}", json={"max_concurrency": 20})
    pool.upstream.behave(credential, "slow", delay_ms=200, count=-1)

    async def abandon_one(client: httpx.AsyncClient) -> None:
        async with client.stream(
            "POST", "/claude/v1/messages", json=BODY, headers={"x-api-key": pool.key}
        ) as r:
            assert r.status_code == 200, (r.status_code, await r.aread())
            async for _chunk in r.aiter_raw():
                break  # the first bytes arrived: hang up mid-stream

    async def run() -> None:
        async with httpx.AsyncClient(base_url=pool.relay.base_url, timeout=30) as client:
            for _ in range(40):  # 40 waves of 5
                await asyncio.gather(*(abandon_one(client) for _ in range(5)))

    asyncio.run(run())
    pool.upstream.behave(credential, "ok")
    deadline = time.monotonic() + 10
    while pool.admin.ok("GET", f"/api/admin/users/{pool.user_id}/concurrency")["current"]:
        assert time.monotonic() < deadline, "user slots still held after the clients left"
        time.sleep(0.1)
    pool.logs(expect=200)
    pool.admin.ok("PUT", f"/api/admin/accounts/{pool.accounts[credential]}", json={"max_concurrency": 5})
    pool.admin.ok("PUT", f"/api/admin/users/{pool.user_id}", json={"max_concurrency": 5})
    pool.settle()
    gone = pool.admin.ok("GET", f"/api/admin/logs?api_key_id={pool.key_id}&status=client_gone&page_size=1")
    assert gone["total"] == 200

    async def five_at_once() -> list[int]:
        async with httpx.AsyncClient(base_url=pool.relay.base_url, timeout=30) as client:
            body = {**BODY, "stream": False}
            replies = await asyncio.gather(
                *(
                    client.post("/claude/v1/messages", json=body, headers={"x-api-key": pool.key})
                    for _ in range(5)
                )
            )
            return [r.status_code for r in replies]

    # Exactly at both limits: one leaked user or account slot would turn a 200 into a 429.
    assert asyncio.run(five_at_once()) == [200] * 5


def test_sticky_sessions_keep_a_conversation_on_one_account(pool: Pool) -> None:
    first, second = pool.add_account(), pool.add_account()
    client = anthropic.Anthropic(base_url=f"{pool.relay.base_url}/claude", api_key=pool.key, max_retries=0)
    body = {k: v for k, v in BODY.items() if k != "stream"}
    for session in ("conversation-a", "conversation-b", "conversation-c"):
        for _ in range(6):
            client.messages.create(**body, extra_headers={"x-claude-code-session-id": session})
    logs = pool.logs(expect=18)
    by_session: dict[str, set[int]] = {}
    for log in logs:
        by_session.setdefault(log["session_hash"], set()).add(log["account_id"])
    assert len(by_session) == 3 and all(len(accounts) == 1 for accounts in by_session.values())

    # The bound account goes away: the binding moves instead of failing.
    bound = next(iter(by_session[logs[0]["session_hash"]]))
    credential = first if pool.accounts[first] == bound else second
    pool.admin.ok("PUT", f"/api/admin/accounts/{bound}/status", json={"status": "invalid"})
    pool.settle()
    client.messages.create(**body, extra_headers={"x-claude-code-session-id": "conversation-a"})
    client.messages.create(**body, extra_headers={"x-claude-code-session-id": "conversation-b"})
    newest = pool.logs(expect=20)[:2]
    assert all(log["account_id"] != bound for log in newest)
    assert credential
