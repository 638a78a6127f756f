"""The real command-line clients through the relay: Claude Code, Codex CLI and Gemini CLI (versions pinned
in package-lock.json) each complete a one-shot prompt against the fake upstream.

Each test checks what the user sees (the CLI prints the fake's answer) and what the relay kept: one
request-log row per request the CLI made (every one the fake upstream received, nothing else),
billed with the usage the fake reported, and the client identified by the seeded client types in
strict mode. The fake upstream's request record is the witness of what the CLI sent.

A tool-using turn cannot be driven from these CLIs: the fake answers with a function call only when
`tool_choice` forces one ("required" or a named function, Responses API only), and the CLIs send
`tool_choice: auto` (Codex) or nothing (Claude Code, Gemini CLI), so the model always answers in text.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ..gateway.conftest import Pool
from ..gateway.helpers import assert_billed, model_prices
from .clis import (
    ClientHome,
    CliRun,
    codex_login,
    pinned_versions,
    run_claude,
    run_codex,
    run_gemini,
    write_builtin_openai_config,
    write_codex_config,
)

pytestmark = pytest.mark.usefixtures("clients_installed")
VERSIONS = pinned_versions()


def fresh_upstream(pool: Pool) -> None:
    """Forget what the fake upstream saw so far (it serves only this module)."""
    assert pool.upstream.http.delete("/__mock/requests").status_code == 200


def upstream_calls(pool: Pool) -> list[dict[str, Any]]:
    """What the fake upstream received from the relay for this pool's accounts, oldest first."""
    records = pool.upstream.http.get("/__mock/requests").json()
    return [r for r in records if r.get("api_key") in pool.accounts]


def assert_logged_and_billed(
    pool: Pool, key_id: int, calls: list[dict[str, Any]], client_type: str, relay_path: str | None = None
) -> None:
    """One successful request-log row per upstream call, carrying that call's usage and price; the row's
    path is the upstream's (same protocol) or `relay_path` (served in another protocol)."""
    logs = pool.logs(key_id, expect=len(calls))
    assert len(logs) == len(calls), (logs, calls)
    prices: dict[str, dict[str, Any]] = {}
    by_call = sorted(calls, key=lambda c: (c["model"], c["tokens"]["input_tokens"]))
    by_row = sorted(logs, key=lambda row: (row["model"], row["input_tokens"]))
    for row, call in zip(by_row, by_call, strict=True):
        assert row["status"] == "success" and row["status_code"] == 200, row
        assert row["client_type"] == client_type, row
        path_ok = row["path"] == relay_path if relay_path else row["path"].endswith(call["path"])
        assert row["model"] == call["model"] and path_ok, (row, call)
        assert row["account_id"] == pool.accounts[call["api_key"]]
        if call["model"] not in prices:
            prices[call["model"]] = model_prices(pool.admin, call["model"])
        assert_billed(row, call["tokens"], prices[call["model"]])


def answered(run: CliRun, text: str) -> None:
    assert run.returncode == 0, run.describe()
    assert run.stdout.strip() == text, run.describe()


def test_claude_code_one_shot(client_pool: Pool, client_home: ClientHome) -> None:
    pool = client_pool
    fresh_upstream(pool)
    key, key_id = pool.new_key()
    run = run_claude(client_home, f"{pool.relay.base_url}/claude", key, "say hi")
    calls = upstream_calls(pool)
    assert [(c["method"], c["path"], c["query"]) for c in calls] == [
        ("POST", "/v1/messages", {"beta": "true"})
    ]
    call = calls[0]
    assert call["stream"] and call["headers"]["user-agent"].startswith(f"claude-cli/{VERSIONS['claude']} ")
    answered(run, call["text"])
    assert call["text"].startswith("Hello from mock claude-")
    assert_logged_and_billed(pool, key_id, calls, "claude-code")


def test_codex_exec_one_shot(client_pool: Pool, client_home: ClientHome) -> None:
    pool = client_pool
    fresh_upstream(pool)
    key, key_id = pool.new_key()
    write_codex_config(client_home, f"{pool.relay.base_url}/v1")
    run = run_codex(client_home, key, ["--skip-git-repo-check", "say hi"])
    calls = upstream_calls(pool)
    assert [(c["method"], c["path"]) for c in calls] == [("POST", "/v1/responses")]
    call = calls[0]
    assert call["stream"] and call["model"] == "gpt-5-codex"
    assert call["headers"]["user-agent"].startswith(f"codex_exec/{VERSIONS['codex']} ")
    answered(run, call["text"])
    assert_logged_and_billed(pool, key_id, calls, "codex-cli")


def user_texts(items: list[dict[str, Any]]) -> list[str]:
    """The plain user prompts of a Responses input (not Codex's context blocks)."""
    texts = []
    for item in items:
        if item.get("role") == "user":
            for part in item.get("content") or ():
                text = part.get("text", "")
                if part.get("type") == "input_text" and not text.startswith("<"):
                    texts.append(text)
    return texts


def test_codex_exec_resume_carries_the_first_turn(client_pool: Pool, client_home: ClientHome) -> None:
    """Two turns, the second with `codex exec resume --last`: it sends the first turn's history."""
    pool = client_pool
    fresh_upstream(pool)
    key, key_id = pool.new_key()
    write_codex_config(client_home, f"{pool.relay.base_url}/v1")
    first = run_codex(client_home, key, ["--skip-git-repo-check", "say hi"])
    second = run_codex(client_home, key, ["resume", "--last", "--skip-git-repo-check", "and now bye"])
    calls = upstream_calls(pool)
    assert [(c["method"], c["path"]) for c in calls] == [("POST", "/v1/responses")] * 2
    answered(first, calls[0]["text"])
    answered(second, calls[1]["text"])
    one, two = calls[0]["json"], calls[1]["json"]
    assert user_texts(one["input"]) == ["say hi"]
    assert user_texts(two["input"]) == ["say hi", "and now bye"]
    replies = [i for i in two["input"] if i.get("role") == "assistant"]
    assert [p["text"] for i in replies for p in i["content"]] == [calls[0]["text"]]
    # The same conversation: the relay keeps it on one account by this key.
    assert one["prompt_cache_key"] == two["prompt_cache_key"]
    assert calls[0]["headers"]["session-id"] == calls[1]["headers"]["session-id"]
    assert_logged_and_billed(pool, key_id, calls, "codex-cli")


def test_gemini_cli_one_shot(client_pool: Pool, client_home: ClientHome) -> None:
    pool = client_pool
    fresh_upstream(pool)
    key, key_id = pool.new_key()
    run = run_gemini(client_home, f"{pool.relay.base_url}/gemini", key, "say hi")
    calls = upstream_calls(pool)
    # The model router's JSON call on a flash-lite model, then the turn on the model it picked.
    assert [(c["endpoint"], c["stream"]) for c in calls] == [
        ("generateContent", False),
        ("streamGenerateContent", True),
    ], calls
    router, turn = calls
    assert all(c["headers"]["user-agent"].startswith(f"GeminiCLI-tui/{VERSIONS['gemini']}/") for c in calls)
    assert json.loads(router["text"])["complexity_score"] >= 1
    assert turn["query"] == {"alt": "sse"} and turn["path"].startswith("/v1beta/models/")
    answered(run, turn["text"])
    assert_logged_and_billed(pool, key_id, calls, "gemini-cli")


# -- Responses WebSocket and remote compaction ------------------------------------------------------

WEBSOCKET_PROVIDER = "supports_websockets = true\nstream_max_retries = 0"
# Remote compaction is what Codex does for the OpenAI provider (matched by its name) and Azure; any other
# custom provider compacts locally, with an ordinary turn that asks the model for a summary.
OPENAI_NAME = "OpenAI"
COMPACT_EARLY = "model_auto_compact_token_limit = 2000"  # below one turn of the fake: the next one compacts
# Codex 0.169 compacts with a Responses request whose input ends in {"type": "compaction_trigger"} and
# expects exactly one `compaction` output item back (the fake gives one); it never calls /responses/compact.


def test_codex_local_compaction(client_pool: Pool, client_home: ClientHome) -> None:
    """With a custom provider (the set-up docs/clients.md gives) Codex compacts locally: before the second
    turn it asks the model for a summary in an ordinary turn, and the next turn carries that summary in
    place of the first turn's answer. All three are ordinary relayed requests, logged and billed."""
    pool = client_pool
    fresh_upstream(pool)
    key, key_id = pool.new_key()
    write_codex_config(client_home, f"{pool.relay.base_url}/v1", top=COMPACT_EARLY)
    first = run_codex(client_home, key, ["--skip-git-repo-check", "say hi"])
    second = run_codex(client_home, key, ["resume", "--last", "--skip-git-repo-check", "and now bye"])
    calls = upstream_calls(pool)
    assert [(c["method"], c["path"]) for c in calls] == [("POST", "/v1/responses")] * 3
    one, summary, two = calls
    asked = user_texts(summary["json"]["input"])
    assert asked[:1] == ["say hi"] and "CONTEXT CHECKPOINT COMPACTION" in asked[-1], asked
    carried = [text for text in user_texts(two["json"]["input"]) if summary["text"] in text]
    assert len(carried) == 1, two["json"]["input"]
    assert not [item for item in two["json"]["input"] if item.get("role") == "assistant"]
    answered(first, one["text"])
    answered(second, two["text"])
    assert "context compacted" in second.stderr
    assert_logged_and_billed(pool, key_id, calls, "codex-cli")


def split_socket_calls(calls: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(upstream WebSocket connections, turns sent over them) out of the fake's records."""
    sockets = [c for c in calls if c["endpoint"] == "responses.websocket"]
    turns = [c for c in calls if c["endpoint"] == "responses" and c["method"] == "WS"]
    return sockets, turns


def test_codex_over_websocket(client_pool: Pool, client_home: ClientHome) -> None:
    """A provider with `supports_websockets`: the turn goes over one socket, a warm-up (`generate: false`)
    and then the turn continuing it by `previous_response_id`; the relay keeps one upstream connection for
    it and logs and bills each turn."""
    pool = client_pool
    fresh_upstream(pool)
    key, key_id = pool.new_key()
    write_codex_config(client_home, f"{pool.relay.base_url}/v1", provider=WEBSOCKET_PROVIDER)
    run = run_codex(client_home, key, ["--skip-git-repo-check", "say hi"])
    calls = upstream_calls(pool)
    sockets, turns = split_socket_calls(calls)
    assert len(sockets) == 1 and len(turns) == len(calls) - 1, calls  # no fallback to HTTP
    assert sockets[0]["headers"]["user-agent"].startswith(f"codex_exec/{VERSIONS['codex']} ")
    warm_up, turn = turns
    assert warm_up["json"]["generate"] is False and "generate" not in turn["json"]
    assert turn["json"]["previous_response_id"]
    assert user_texts(turn["json"]["input"]) == ["say hi"]
    answered(run, turn["text"])
    assert_logged_and_billed(pool, key_id, turns, "codex-cli")


@pytest.mark.parametrize("transport", ["http", "websocket"])
def test_codex_remote_compaction(client_pool: Pool, client_home: ClientHome, transport: str) -> None:
    """Codex compacts before the second turn (its token limit is below the first turn's usage): a
    Responses request whose input ends in `compaction_trigger`, answered with one `compaction` item
    that the next turn carries in place of the first turn's answer."""
    pool = client_pool
    fresh_upstream(pool)
    key, key_id = pool.new_key()
    provider = WEBSOCKET_PROVIDER if transport == "websocket" else ""
    base_url = f"{pool.relay.base_url}/v1"
    write_codex_config(client_home, base_url, name=OPENAI_NAME, provider=provider, top=COMPACT_EARLY)
    first = run_codex(client_home, key, ["--skip-git-repo-check", "say hi"])
    second = run_codex(client_home, key, ["resume", "--last", "--skip-git-repo-check", "and now bye"])
    calls = upstream_calls(pool)
    if transport == "websocket":
        sockets, turns = split_socket_calls(calls)
        assert sockets and len(turns) == len(calls) - len(sockets), calls  # no fallback to HTTP
        turns = [t for t in turns if t["json"].get("generate") is not False]  # warm-ups
    else:
        turns = calls
        assert [(c["method"], c["path"]) for c in calls] == [("POST", "/v1/responses")] * 3
    one, compaction, two = turns
    assert compaction["json"]["input"][-1] == {"type": "compaction_trigger"}
    compacted = [item for item in two["json"]["input"] if item.get("type") == "compaction"]
    assert len(compacted) == 1 and compacted[0].get("encrypted_content"), two["json"]["input"]
    assert not [item for item in two["json"]["input"] if item.get("role") == "assistant"]
    assert user_texts(two["json"]["input"]) == ["say hi", "and now bye"]
    answered(first, one["text"])
    answered(second, two["text"])
    assert "context compacted" in second.stderr
    logged = calls if transport == "http" else split_socket_calls(calls)[1]
    assert_logged_and_billed(pool, key_id, logged, "codex-cli")


def test_codex_builtin_openai_provider(client_pool: Pool, client_home: ClientHome) -> None:
    """The first set-up docs/clients.md gives: Codex's built-in OpenAI provider with `openai_base_url` at the
    relay and the relay key stored by `codex login --with-api-key`. It uses the WebSocket by default: one
    socket, a warm-up and the turn, each logged and billed."""
    pool = client_pool
    fresh_upstream(pool)
    key, key_id = pool.new_key()
    write_builtin_openai_config(client_home, f"{pool.relay.base_url}/v1")
    login = codex_login(client_home, key)
    assert login.returncode == 0, login.describe()
    run = run_codex(client_home, "", ["--skip-git-repo-check", "say hi"])
    assert run.returncode == 0, run.describe()
    calls = upstream_calls(pool)
    sockets, turns = split_socket_calls(calls)
    assert len(sockets) == 1 and len(turns) == len(calls) - 1, calls  # no fallback to HTTP
    turn = [t for t in turns if t["json"].get("generate") is not False][-1]
    assert user_texts(turn["json"]["input"])[-1:] == ["say hi"]
    answered(run, turn["text"])
    assert_logged_and_billed(pool, key_id, turns, "codex-cli")


# -- across protocols ---------------------------------------------------------------------------------


def test_claude_code_served_by_an_openai_account(client_pool: Pool, client_home: ClientHome) -> None:
    """Claude Code asking for `openai,gpt-5-codex` (the account type forced in the model name): the OpenAI
    account serves it, the Anthropic stream Claude Code reads is converted from the Chat Completions one,
    and the turn is logged and billed at the OpenAI account's usage."""
    pool = client_pool
    fresh_upstream(pool)
    key, key_id = pool.new_key()
    base_url = f"{pool.relay.base_url}/claude"
    run = run_claude(client_home, base_url, key, "say hi", model="openai,gpt-5-codex")
    calls = upstream_calls(pool)
    assert [(c["method"], c["path"]) for c in calls] == [("POST", "/v1/chat/completions")], calls
    assert calls[0]["model"] == "gpt-5-codex" and calls[0]["stream"]
    answered(run, calls[0]["text"])
    assert_logged_and_billed(pool, key_id, calls, "claude-code", relay_path="/claude/v1/messages")


def test_codex_served_by_a_claude_account(client_pool: Pool, client_home: ClientHome) -> None:
    """Codex configured with a Claude model: the Claude account serves each turn, Codex reads the Responses
    stream converted from Anthropic's, and `codex exec resume` carries the first turn's history."""
    pool = client_pool
    fresh_upstream(pool)
    key, key_id = pool.new_key()
    write_codex_config(client_home, f"{pool.relay.base_url}/v1", model="claude-opus-4-8")
    first = run_codex(client_home, key, ["--skip-git-repo-check", "say hi"])
    second = run_codex(client_home, key, ["resume", "--last", "--skip-git-repo-check", "and now bye"])
    calls = upstream_calls(pool)
    assert [(c["method"], c["path"]) for c in calls] == [("POST", "/v1/messages")] * 2, calls
    one, two = calls
    answered(first, one["text"])
    answered(second, two["text"])
    roles = [m["role"] for m in two["json"]["messages"]]
    assert roles[-3:] == ["user", "assistant", "user"] and one["text"] in json.dumps(two["json"]["messages"])
    assert_logged_and_billed(pool, key_id, calls, "codex-cli", relay_path="/v1/responses")
