"""The client filter on the request path, with what real clients send.

Every request that real clients were seen to send (tests/fixtures/client-requests.jsonl: Claude
Code, Codex CLI, Gemini CLI, the official Python SDKs, curl) is replayed through the relay with
the seeded client types: strict mode lets each client through as itself and refuses what no
type matches. Forged and newer clients, simple mode, and the key's and the package's client
lists are checked the same way; each request must end as exactly one request-log row that names
the client (or, refused, the rule that refused it).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from ..support import Api
from .conftest import Pool, Upstream
from .restarts import Backend, admin_with_account, logged, two_instances

FIXTURES = Path(__file__).parents[1] / "fixtures" / "client-requests.jsonl"
REPLAYED_HEADERS_DROPPED = {
    "host",
    "content-length",
    "connection",
    "accept-encoding",
    "authorization",
    "x-api-key",
    "x-goog-api-key",
}
FORBIDDEN = "当前客户端不允许访问"
KEY_FORBIDDEN = "此 API Key 不允许当前客户端访问"
PACKAGE_FORBIDDEN = "套餐不允许当前客户端访问"
OFF = {"filter_enabled": False, "filter_mode": "simple", "allowed_clients": [], "default_allow": False}


def expected_client(sender: str) -> str | None:
    for prefix, name in (
        ("claude-cli/", "claude-code"),
        ("codex_", "codex-cli"),
        ("GeminiCLI", "gemini-cli"),
        ("Anthropic/", "anthropic-sdk"),
        ("OpenAI/", "openai-sdk"),
        ("google-genai-sdk/", "google-genai-sdk"),
    ):
        if sender.startswith(prefix):
            return name
    return None


def recorded() -> list[dict[str, Any]]:
    """Every fixture request a client sent to the API (the Bun preflight `HEAD /` is not one)."""
    lines = [json.loads(line) for line in FIXTURES.read_text().splitlines()]
    return [r for r in lines if r["method"] != "HEAD"]


def relay_path(path: str) -> str:
    """The CLIs were pointed at the bare host; through the relay each has its prefix."""
    if path.startswith("/v1/messages"):
        return "/claude" + path
    if path.startswith(("/v1beta/", "/v1/models/")):
        return "/gemini" + path
    return path


def replay(pool: Pool, record: dict[str, Any], *, key: str | None = None, **changes: str) -> httpx.Response:
    """One recorded request as its client sent it, with the relay key in the same header."""
    original = record["headers"]
    headers = {k: v for k, v in original.items() if k not in REPLAYED_HEADERS_DROPPED}
    key = key or pool.key
    if "x-api-key" in original:
        headers["x-api-key"] = key
    elif "x-goog-api-key" in original:
        headers["x-goog-api-key"] = key
    else:
        headers["authorization"] = f"Bearer {key}"
    headers.update(changes)
    url = (
        pool.relay.base_url + relay_path(record["path"]) + (f"?{record['query']}" if record["query"] else "")
    )
    body = json.dumps(record["body"]).encode() if record["body"] is not None else None
    return httpx.request(record["method"], url, headers=headers, content=body, timeout=30)


def one_of(sender_prefix: str) -> dict[str, Any]:
    return next(r for r in recorded() if r["client"].startswith(sender_prefix) and r["method"] == "POST")


@pytest.fixture
def client_pool(pool: Pool) -> Iterator[Pool]:
    """A pool with an account of every family the recorded clients need; the filter is switched
    off again afterwards whatever the test did (it is global)."""
    for account_type in ("claude-official", "openai", "gemini"):
        pool.add_account(account_type, settle=False)
    pool.settle()
    try:
        yield pool
    finally:
        pool.admin.ok("PUT", "/api/admin/client-filter/config", json=OFF)
        pool.settle()


def set_filter(pool: Pool, **config: Any) -> None:
    pool.admin.ok("PUT", "/api/admin/client-filter/config", json={**OFF, **config})
    pool.settle()


def test_strict_mode_lets_every_recorded_client_through_as_itself(client_pool: Pool) -> None:
    pool = client_pool
    set_filter(pool, filter_enabled=True, filter_mode="strict")
    records = recorded()
    outcomes = []
    for record in records:
        reply = replay(pool, record)
        reply.read()
        outcomes.append((record, reply))
    for record, reply in outcomes:
        expected = expected_client(record["client"])
        if expected is None:  # curl: no client type matches, and unknown clients are not allowed
            assert reply.status_code == 403, (record["client"], reply.text)
        else:
            assert reply.status_code == 200, (record["client"], record["path"], reply.text)
    logs = pool.logs(expect=len(records))
    assert len(logs) == len(records)  # one row per request, refused ones included
    by_agent: dict[str, set[str]] = {}
    for row in logs:
        by_agent.setdefault(row["user_agent"], set()).add(row["client_type"])
    for record in records:
        expected = expected_client(record["client"])
        assert by_agent[record["headers"]["user-agent"]] == {expected or ""}, record["client"]
    refused = [row for row in logs if row["status_code"] == 403]
    assert len(refused) == sum(1 for r in records if expected_client(r["client"]) is None)
    assert all(
        r["status"] == "rejected" and "User-Agent matches no enabled client type" in r["error_message"]
        for r in refused
    )


def test_forged_claude_code_user_agent_fails_strict_but_passes_simple(client_pool: Pool) -> None:
    pool = client_pool
    sdk_request = one_of("Anthropic/")  # an SDK's headers and body, under Claude Code's name
    forged = {"user-agent": "claude-cli/2.1.197 (external, sdk-cli)"}
    set_filter(pool, filter_enabled=True, filter_mode="strict", allowed_clients=["claude-code"])
    refused = replay(pool, sdk_request, **forged)
    assert refused.status_code == 403
    assert refused.json() == {"type": "error", "error": {"type": "permission_error", "message": FORBIDDEN}}
    # With the missing headers added, the body still gives it away.
    headers_too = {**forged, "x-app": "cli", "anthropic-beta": "claude-code-20250219,effort-2025-11-24"}
    assert replay(pool, sdk_request, **headers_too).status_code == 403
    # A real Claude Code request from a release far newer than the one recorded passes.
    real = one_of("claude-cli/")
    newer = {"user-agent": "claude-cli/9.40.1234 (external, cli)"}
    assert replay(pool, real, **newer).status_code == 200
    set_filter(pool, filter_enabled=True, filter_mode="simple", allowed_clients=["claude-code"])
    assert replay(pool, sdk_request, **forged).status_code == 200  # simple mode reads the UA only
    logs = pool.logs(expect=4)
    assert [(row["status_code"], row["client_type"]) for row in reversed(logs)] == [
        (403, ""),
        (403, ""),
        (200, "claude-code"),
        (200, "claude-code"),
    ]
    reasons = [row["error_message"] for row in reversed(logs) if row["status_code"] == 403]
    assert "claude-code: header x-app missing" in reasons[0]
    assert "claude-code: body metadata.user_id missing" in reasons[1]


def test_official_sdks_are_told_apart_from_the_clis(client_pool: Pool) -> None:
    pool = client_pool
    set_filter(pool, filter_enabled=True, filter_mode="strict", allowed_clients=["claude-code", "codex-cli"])
    claude_sdk = anthropic.Anthropic(
        base_url=f"{pool.relay.base_url}/claude", api_key=pool.key, max_retries=0
    )
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        claude_sdk.messages.create(
            model="claude-opus-4-8", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.body["error"]["message"] == FORBIDDEN  # type: ignore[index]
    openai_sdk = openai.OpenAI(base_url=f"{pool.relay.base_url}/openai/v1", api_key=pool.key, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        openai_sdk.responses.create(model="gpt-5", input="hi")
    assert replay(pool, one_of("codex_")).status_code == 200  # the Codex CLI itself
    set_filter(pool, filter_enabled=True, filter_mode="strict", allowed_clients=["anthropic-sdk"])
    message = claude_sdk.messages.create(
        model="claude-opus-4-8", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.usage.output_tokens > 0
    logs = pool.logs(expect=4)
    assert sorted((row["status_code"], row["client_type"]) for row in logs) == [
        (200, "anthropic-sdk"),
        (200, "codex-cli"),
        (403, ""),
        (403, ""),
    ]
    assert any("client anthropic-sdk not allowed" in row["error_message"] for row in logs)
    assert any("client openai-sdk not allowed" in row["error_message"] for row in logs)


def test_a_keys_client_list_holds_with_the_filter_off(client_pool: Pool) -> None:
    pool = client_pool
    codex_key, codex_key_id = pool.new_key(allowed_clients="codex-cli")
    assert replay(pool, one_of("codex_"), key=codex_key).status_code == 200
    refused = replay(pool, one_of("OpenAI/"), key=codex_key)
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == KEY_FORBIDDEN  # OpenAI's error shape
    assert refused.json()["error"]["type"] == "permission_error"
    gemini = replay(pool, one_of("google-genai-sdk/"), key=codex_key)
    assert gemini.status_code == 403 and gemini.json()["error"]["status"] == "PERMISSION_DENIED"
    # The key's own owner does not change what other keys may do.
    assert replay(pool, one_of("OpenAI/")).status_code == 200
    logs = pool.logs(codex_key_id, expect=3)
    assert sorted(row["status_code"] for row in logs) == [200, 403, 403]
    assert pool.logs(expect=1)[0]["client_type"] == ""  # no list, no filter: not even identified


def test_a_packages_client_list_decides_which_clients_it_pays_for(client_pool: Pool) -> None:
    pool = client_pool
    package = pool.admin.ok(
        "POST",
        "/api/admin/packages",
        json={
            "name": f"cc-{uuid.uuid4().hex[:8]}",
            "price": 1,
            "token_quota": 0,
            "valid_days": 30,
            "allowed_clients": "claude-code",
        },
    )
    holding = pool.admin.ok(
        "POST", f"/api/admin/user-packages/user/{pool.user_id}", json={"package_id": package["id"]}
    )
    pool.settle()
    served = replay(pool, one_of("claude-cli/"))
    assert served.status_code == 200
    refused = replay(pool, one_of("Anthropic/"))
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == PACKAGE_FORBIDDEN
    logs = pool.logs(expect=2)
    by_status = {row["status_code"]: row for row in logs}
    assert by_status[200]["client_type"] == "claude-code"
    assert "client anthropic-sdk not in package" in by_status[403]["error_message"]
    mine = next(p for p in pool.user.ok("GET", "/api/my-packages") if p["id"] == holding["id"])
    assert mine["used_tokens"] == by_status[200]["total_tokens"] > 0  # billed once, to the package


def test_model_lists_and_token_counts_are_judged_on_user_agent_and_path(client_pool: Pool) -> None:
    pool = client_pool
    set_filter(pool, filter_enabled=True, filter_mode="strict", allowed_clients=["claude-code"])
    headers = {
        "x-api-key": pool.key,
        "user-agent": "claude-cli/2.1.197 (external, cli)",
        "x-app": "cli",
        "anthropic-beta": "claude-code-20250219",
        "anthropic-version": "2023-06-01",
    }
    base = pool.relay.base_url
    models = httpx.get(f"{base}/claude/v1/models", headers=headers)
    assert models.status_code == 200, models.text
    counted = httpx.post(
        f"{base}/claude/v1/messages/count_tokens",
        headers=headers,
        json={"model": "claude-opus-4-8", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert counted.status_code == 200, counted.text
    # Claude Code's user agent on an OpenAI path is not Claude Code.
    chat = httpx.post(
        f"{base}/openai/v1/chat/completions",
        headers={**headers, "authorization": f"Bearer {pool.key}"},
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert chat.status_code == 403
    logs = pool.logs(expect=3)
    assert any("is not one of its paths" in row["error_message"] for row in logs)


def test_the_test_route_names_the_rule_that_decided(client_pool: Pool, admin: Api) -> None:
    real = one_of("claude-cli/")
    verdict = admin.ok(
        "POST",
        "/api/admin/client-filter/test",
        json={
            "user_agent": real["headers"]["user-agent"],
            "headers": real["headers"],
            "body": real["body"],
            "mode": "strict",
        },
    )
    assert verdict["allowed"] is True and verdict["client_type"] == "claude-code"
    assert verdict["match_details"] == {"ua_matched": True, "headers_valid": True, "body_valid": True}
    forged_body = {**real["body"], "metadata": {"user_id": "someone"}}
    verdict = admin.ok(
        "POST",
        "/api/admin/client-filter/test",
        json={"headers": real["headers"], "body": forged_body, "mode": "strict"},
    )
    assert verdict["allowed"] is False and verdict["client_type"] is None
    assert verdict["match_details"] == {"ua_matched": True, "headers_valid": True, "body_valid": False}
    rule = admin.ok("GET", f"/api/admin/client-filter/rules/{verdict['rule_id']}")
    assert rule["field_name"] == "metadata.user_id"
    assert "does not match" in verdict["reason"]


def test_a_filter_change_on_one_instance_holds_on_the_other(
    tmp_path: Path, backend: Backend, upstream: Upstream
) -> None:
    with two_instances(backend, tmp_path) as (first, second):
        admin = admin_with_account(first, f"cf-{uuid.uuid4().hex[:8]}", upstream.base_url)
        key = admin.ok("POST", "/api/api-keys", json={"name": "tool"})["key"]
        tool = admin.ok(
            "POST",
            "/api/admin/client-filter/client-types",
            json={"name": "in-house", "display_name": "In-house tool", "ua_pattern": r"^in-house/\d+"},
        )
        admin.ok(
            "POST",
            "/api/admin/client-filter/rules",
            json={
                "client_type_id": tool["id"],
                "rule_type": "header",
                "field_name": "x-team",
                "pattern": "^ml$",
            },
        )
        admin.ok(
            "PUT",
            "/api/admin/client-filter/config",
            json={"filter_enabled": True, "filter_mode": "strict", "allowed_clients": ["in-house"]},
        )
        time.sleep(0.6)  # each instance looks at the pool version at most every half second

        def ask(headers: dict[str, str]) -> int:
            reply = httpx.post(
                f"{second.base_url}/claude/v1/messages",
                headers={"x-api-key": key, **headers},
                json={
                    "model": "claude-opus-4-8",
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": "hi"}],
                },
                timeout=30,
            )
            return reply.status_code

        assert ask({"user-agent": "in-house/3.1", "x-team": "ml"}) == 200
        assert ask({"user-agent": "in-house/3.1", "x-team": "web"}) == 403
        assert ask({"user-agent": "claude-cli/2.1.197 (external, cli)"}) == 403
        admin.ok("PUT", f"/api/admin/client-filter/client-types/{tool['id']}/toggle")  # off, on the first
        time.sleep(0.6)
        assert ask({"user-agent": "in-house/3.1", "x-team": "ml"}) == 403
        admin.ok("PUT", "/api/admin/client-filter/config", json={"filter_enabled": False})
        time.sleep(0.6)
        assert ask({"user-agent": "in-house/3.1", "x-team": "ml"}) == 200
        admin.close()
        key_id = next(k["id"] for k in Api(first.base_url, admin.token).ok("GET", "/api/api-keys"))
    agents = sorted(agent for _, agent in logged(backend, tmp_path / "one", key_id))
    # One row per request, refused ones included.
    assert agents == ["claude-cli/2.1.197 (external, cli)"] + ["in-house/3.1"] * 4
