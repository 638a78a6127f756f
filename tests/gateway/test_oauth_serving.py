"""Subscription (OAuth) accounts serving real SDK calls: Claude, Codex and Gemini Code Assist.

Each account is onboarded through the admin API against the fake providers of the mock
upstream, then serves the official SDKs. The fake upstream refuses revoked and expired access
tokens the way the vendors do, and rotates refresh tokens (a reused one is dead), so these
tests see what the relay really sends and how its token refresher behaves.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from ..oauth_support import oauth_env
from ..support import ADMIN_PASSWORD, Api, RelayServer
from .conftest import Upstream
from .restarts import Backend, started_relay, two_instances

CLAUDE_MODEL = "claude-opus-4-8"
CODEX_MODEL = "gpt-5-codex"
GEMINI_MODEL = "gemini-2.5-flash"
HELLO: list[Any] = [{"role": "user", "content": "hello"}]
CLIENT_REQUESTS = Path(__file__).parents[1] / "fixtures" / "client-requests.jsonl"


def relay_env(upstream: Upstream, refresh_interval: str = "0.3") -> dict[str, str]:
    """Every provider URL of the relay pointed at the fake providers; a quick refresh sweep."""
    return {**oauth_env(upstream.base_url), "AIPROXY_OAUTH_REFRESH_INTERVAL": refresh_interval}


class OAuthSetup:
    """An admin on a relay, with one group, and a user of its own whose key is bound to it (a user
    may hold only so many keys, and every test makes a setup)."""

    def __init__(self, relay: RelayServer, upstream: Upstream) -> None:
        self.relay = relay
        self.upstream = upstream
        self.admin = Api(relay.base_url)
        self.admin.login("admin", ADMIN_PASSWORD)
        group = self.admin.ok("POST", "/api/admin/account-groups", json={"name": f"g-{uuid.uuid4().hex[:8]}"})
        self.group_id = group["id"]
        user = self.admin.ok(
            "POST",
            "/api/admin/users",
            json={"username": f"u{uuid.uuid4().hex[:10]}", "password": "user-pass-1"},
        )
        key = self.admin.ok("POST", f"/api/admin/users/{user['id']}/api-keys", json={"name": "main"})
        self.admin.ok(
            "PUT",
            f"/api/admin/api-keys/{key['id']}",
            json={"account_group_id": self.group_id, "rate_limit": 0},
        )
        self.key, self.key_id = key["key"], key["id"]

    def onboard(self, flow: str, **exchange: Any) -> dict[str, Any]:
        """Log in on the fake provider and exchange the code; the account joins this setup's group."""
        started = self.admin.ok("POST", "/api/admin/oauth/generate-url", json={"type": flow})
        login = httpx.get(started["auth_url"], follow_redirects=False)
        assert login.status_code == 302, login.text
        account = self.admin.ok(
            "POST",
            "/api/admin/oauth/exchange",
            json={"session_id": started["session_id"], "code": login.headers["location"], **exchange},
        )
        changes: dict[str, Any] = {"group_ids": [self.group_id]}
        if flow in ("claude", "openai"):  # the vendor API root; Gemini's is the Code Assist setting
            changes["base_url"] = self.upstream.base_url
        self.admin.ok("PUT", f"/api/admin/accounts/{account['id']}", json=changes)
        self.settle()
        return self.account(account["id"])

    def onboard_expiring(self, seconds: int) -> dict[str, Any]:
        """A Claude account whose token expires in `seconds`, enabled only once the fake provider
        is back to long lifetimes (so the tokens the refresher gets are not short too)."""
        placeholder = self.admin.ok(
            "POST",
            "/api/admin/accounts",
            json={
                "name": f"expiring-{uuid.uuid4().hex[:6]}",
                "type": "claude-official",
                "access_token": "placeholder-until-login",
                "enabled": False,
                "base_url": self.upstream.base_url,
                "group_ids": [self.group_id],
            },
        )
        mock_oauth(self.upstream, "/__mock/oauth/config", {"expires_in": {"claude": seconds}})
        try:
            started = self.admin.ok(
                "POST",
                "/api/admin/oauth/generate-url",
                json={"type": "claude", "account_id": placeholder["id"]},
            )
            login = httpx.get(started["auth_url"], follow_redirects=False)
            self.admin.ok(
                "POST",
                "/api/admin/oauth/exchange",
                json={"session_id": started["session_id"], "code": login.headers["location"]},
            )
        finally:
            mock_oauth(self.upstream, "/__mock/oauth/config", {"expires_in": {"claude": 28_800}})
        self.admin.ok("PUT", f"/api/admin/accounts/{placeholder['id']}", json={"enabled": True})
        return self.account(placeholder["id"])

    def account(self, account_id: int) -> dict[str, Any]:
        return self.admin.ok("GET", f"/api/admin/accounts/{account_id}")

    def settle(self) -> None:
        if "AIPROXY_REDIS_URL" in self.relay.env_overrides:
            time.sleep(0.6)

    def logs(self, *, expect: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            data = self.admin.ok("GET", f"/api/admin/logs?api_key_id={self.key_id}&page_size=100")
            if data["total"] >= expect:
                assert data["total"] == expect, data["items"]
                return data["items"]
            assert time.monotonic() < deadline, f"only {data['total']} of {expect} logs were written"
            time.sleep(0.05)


def mock_oauth(upstream: Upstream, path: str, body: dict[str, Any] | None = None) -> Any:
    response = upstream.http.post(path, json=body) if body is not None else upstream.http.get(path)
    assert response.status_code == 200, response.text
    return response.json()


def issued_tokens(upstream: Upstream) -> list[dict[str, Any]]:
    return mock_oauth(upstream, "/__mock/oauth/tokens")


def current_access(upstream: Upstream, vendor: str) -> str:
    """The access token of the newest grant the fake issued for `vendor`."""
    mine = [t for t in issued_tokens(upstream) if t["vendor"] == vendor]
    assert mine, "nothing issued"
    return str(mine[-1]["access_token"])


def fail_next_claude_refresh(
    upstream: Upstream, status: int, error: str, description: str, retry_after: float | None = None
) -> None:
    """The fake Claude token endpoint answers the next refresh with this error."""
    failure: dict[str, Any] = {
        "status": status,
        "body": {"error": error, "error_description": description},
        "vendor": "claude",
        "grant_type": "refresh_token",
    }
    if retry_after is not None:
        failure["retry_after"] = retry_after
    mock_oauth(upstream, "/__mock/oauth/config", {"fail": failure})


def token_calls(upstream: Upstream, vendor: str, grant: str = "refresh_token") -> int:
    return int(mock_oauth(upstream, "/__mock/oauth/stats")[vendor].get(grant, 0))


@pytest.fixture(scope="module")
def oauth_relay(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayServer]:
    relay = started_relay(tmp_path_factory.mktemp("oauth-relay"), relay_env(upstream))
    try:
        yield relay
    finally:
        relay.stop()


@pytest.fixture
def setup(oauth_relay: RelayServer, upstream: Upstream) -> Iterator[OAuthSetup]:
    yield OAuthSetup(oauth_relay, upstream)
    mock_oauth(upstream, "/__mock/oauth/config", {"expires_in": {"claude": 28_800, "openai": 864_000}})


def reported_quota(setup: OAuthSetup, account_id: int) -> dict[str, Any]:
    """The account's quota snapshot in the admin view (written in the background)."""
    deadline = time.monotonic() + 5
    while True:
        quota = setup.account(account_id)["quota"]
        if quota is not None:
            return dict(quota)
        assert time.monotonic() < deadline, "no quota snapshot"
        time.sleep(0.05)


def upstream_calls(upstream: Upstream, token: str) -> list[dict[str, Any]]:
    return upstream.requests_for(token)


# -- Claude ----------------------------------------------------------------------------------------


def test_claude_oauth_account_serves_the_anthropic_sdk(setup: OAuthSetup, upstream: Upstream) -> None:
    account = setup.onboard("claude")
    assert account["type"] == "claude-official" and account["status"] == "valid"
    token = current_access(upstream, "claude")
    client = anthropic.Anthropic(api_key=setup.key, base_url=f"{setup.relay.base_url}/claude")
    reply = client.messages.create(
        model=CLAUDE_MODEL, max_tokens=64, system="Be brief.", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.content[0].text
    with client.messages.stream(
        model=CLAUDE_MODEL, max_tokens=64, messages=[{"role": "user", "content": "again"}]
    ) as stream:
        text = "".join(stream.text_stream)
    assert text

    seen = upstream_calls(upstream, token)
    assert len(seen) == 2
    for call in seen:
        headers = {k.lower(): v for k, v in call["headers"].items()}
        assert headers["authorization"] == f"Bearer {token}"
        assert "x-api-key" not in headers
        betas = headers["anthropic-beta"].split(",")
        assert betas[:2] == ["claude-code-20250219", "oauth-2025-04-20"]
        assert headers["user-agent"].startswith("claude-cli/")
        assert headers["x-app"] == "cli"
        system = call["json"]["system"]
        assert system[0]["text"] == "You are Claude Code, Anthropic's official CLI for Claude."
    assert seen[0]["json"]["system"][1]["text"] == "Be brief."  # the client's system prompt is kept

    logs = setup.logs(expect=2)
    assert {log["account_id"] for log in logs} == {account["id"]}
    assert all(log["status"] == "success" and log["output_tokens"] > 0 and log["cost"] > 0 for log in logs)

    quota = reported_quota(setup, account["id"])  # the unified limiter's windows, as last reported
    assert quota["kind"] == "claude_unified" and quota["status"] == "allowed"
    assert quota["five_hour"]["utilization"] == 0.25 and quota["seven_day"]["utilization"] == 0.125
    assert quota["five_hour"]["resets_at"] > time.time()


def test_claude_code_through_an_oauth_account(setup: OAuthSetup, upstream: Upstream) -> None:
    """Claude Code's own recorded request: its body goes up byte for byte, its betas after the oauth one."""
    account = setup.onboard("claude")
    token = current_access(upstream, "claude")
    recorded = next(
        json.loads(line)
        for line in CLIENT_REQUESTS.read_text().splitlines()
        if '"claude-cli/' in line and '"method": "POST"' in line
    )
    dropped = ("host", "content-length", "connection", "x-api-key", "authorization", "accept-encoding")
    headers = {k: v for k, v in recorded["headers"].items() if k not in dropped}
    headers["x-api-key"] = setup.key
    raw = json.dumps(recorded["body"]).encode()
    url = f"{setup.relay.base_url}/claude/v1/messages?beta=true"
    with httpx.stream("POST", url, headers=headers, content=raw, timeout=30) as response:
        assert response.status_code == 200, response.read()
        events = response.read().decode()
    assert "event: message_stop" in events

    (call,) = upstream_calls(upstream, token)
    sent = {k.lower(): v for k, v in call["headers"].items()}
    assert sent["authorization"] == f"Bearer {token}"
    assert sent["user-agent"] == recorded["headers"]["user-agent"]  # Claude Code's own identity
    betas = sent["anthropic-beta"].split(",")
    client_betas = recorded["headers"]["anthropic-beta"].split(",")
    assert betas[:2] == ["claude-code-20250219", "oauth-2025-04-20"]
    assert betas[2:] == [b for b in client_betas if b not in betas[:2]]
    assert call["json"] == recorded["body"]  # its system prompt and billing block untouched
    (log,) = setup.logs(expect=1)
    assert log["account_id"] == account["id"] and log["status"] == "success" and log["output_tokens"] > 0


def test_a_refused_token_is_refreshed_and_the_same_account_retried(
    setup: OAuthSetup, upstream: Upstream
) -> None:
    account = setup.onboard("claude")  # the only account: without the retry the client gets the 401
    old = current_access(upstream, "claude")
    before = token_calls(upstream, "claude")
    mock_oauth(upstream, "/__mock/oauth/revoke", {"access_token": old})

    client = anthropic.Anthropic(api_key=setup.key, base_url=f"{setup.relay.base_url}/claude", max_retries=0)
    reply = client.messages.create(
        model=CLAUDE_MODEL, max_tokens=32, messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.content[0].text

    assert token_calls(upstream, "claude") == before + 1
    new = current_access(upstream, "claude")
    assert len(upstream_calls(upstream, old)) == 1  # refused
    assert len(upstream_calls(upstream, new)) == 1  # the same account, with the new token
    (log,) = setup.logs(expect=1)
    assert log["account_id"] == account["id"] and log["status"] == "success" and log["output_tokens"] > 0
    assert setup.account(account["id"])["status"] == "valid"


def test_tokens_are_refreshed_before_they_expire(setup: OAuthSetup, upstream: Upstream) -> None:
    before = token_calls(upstream, "claude")
    account = setup.onboard_expiring(120)  # inside the 5 min margin
    first_expiry = account["token_expires_at"]
    deadline = time.monotonic() + 15
    while token_calls(upstream, "claude") == before:
        assert time.monotonic() < deadline, "the sweeper did not refresh the expiring token"
        time.sleep(0.1)
    time.sleep(0.5)
    assert token_calls(upstream, "claude") == before + 1  # once, not once per sweep
    refreshed = setup.account(account["id"])
    assert refreshed["token_expires_at"] > first_expiry
    assert refreshed["status"] == "valid"
    # The next request uses the new token.
    client = anthropic.Anthropic(api_key=setup.key, base_url=f"{setup.relay.base_url}/claude")
    client.messages.create(model=CLAUDE_MODEL, max_tokens=16, messages=HELLO)
    assert len(upstream_calls(upstream, current_access(upstream, "claude"))) == 1
    setup.logs(expect=1)


def test_a_dead_refresh_token_takes_the_account_out(setup: OAuthSetup, upstream: Upstream) -> None:
    account = setup.onboard("claude")
    token = current_access(upstream, "claude")
    fail_next_claude_refresh(upstream, 400, "invalid_grant", "Refresh token not found or invalid")
    mock_oauth(upstream, "/__mock/oauth/revoke", {"access_token": token})

    client = anthropic.Anthropic(api_key=setup.key, base_url=f"{setup.relay.base_url}/claude", max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as refused:
        client.messages.create(model=CLAUDE_MODEL, max_tokens=16, messages=HELLO)
    assert refused.value.status_code in (401, 503)
    shown = setup.account(account["id"])
    assert shown["status"] == "token_expired"
    assert "refresh" in shown["status_reason"].lower()
    assert "sk-ant-" not in shown["status_reason"]
    (log,) = setup.logs(expect=1)
    assert log["status"] == "error" and log["cost"] == 0
    # Out of rotation: the next request does not touch the upstream or the token endpoint again.
    calls = len(upstream_calls(upstream, token))
    with pytest.raises(anthropic.APIStatusError):
        client.messages.create(model=CLAUDE_MODEL, max_tokens=16, messages=HELLO)
    assert len(upstream_calls(upstream, token)) == calls
    setup.logs(expect=2)


# -- Codex -----------------------------------------------------------------------------------------


def test_codex_account_serves_the_responses_api(setup: OAuthSetup, upstream: Upstream) -> None:
    account = setup.onboard("openai")
    assert account["type"] == "openai-responses"
    chatgpt_id = account["extra"]["oauth"]["chatgpt_account_id"]
    token = current_access(upstream, "openai")
    client = openai.OpenAI(api_key=setup.key, base_url=f"{setup.relay.base_url}/openai/v1")
    whole = client.responses.create(model=CODEX_MODEL, input="hello", max_output_tokens=50, temperature=0.2)
    assert whole.output_text and whole.usage is not None and whole.usage.output_tokens > 0
    with client.responses.stream(model=CODEX_MODEL, input="again", instructions="Be brief.") as stream:
        final = stream.get_final_response()
    assert final.output_text

    seen = upstream_calls(upstream, token)
    assert len(seen) == 2
    for call in seen:
        headers = {k.lower(): v for k, v in call["headers"].items()}
        assert headers["authorization"] == f"Bearer {token}"
        assert headers["chatgpt-account-id"] == chatgpt_id
        assert headers["originator"]
        body = call["json"]
        assert body["stream"] is True and body["store"] is False and isinstance(body["instructions"], str)
        assert "max_output_tokens" not in body and "temperature" not in body
    logs = setup.logs(expect=2)
    assert all(log["account_id"] == account["id"] and log["status"] == "success" for log in logs)
    assert {log["output_tokens"] for log in logs} == {whole.usage.output_tokens, final.usage.output_tokens}

    quota = reported_quota(setup, account["id"])  # the plan's 5-hour and weekly windows
    assert quota["kind"] == "codex"
    assert quota["primary"]["used_percent"] == 12.5 and quota["primary"]["window_minutes"] == 300
    assert quota["secondary"]["used_percent"] == 3 and quota["secondary"]["resets_at"] > time.time()


def test_codex_plan_limit_cools_the_account_until_its_reset(setup: OAuthSetup, upstream: Upstream) -> None:
    account = setup.onboard("openai")
    token = current_access(upstream, "openai")
    upstream.behave(token, "429", retry_after=7200)  # the backend says resets_in_seconds: 7200
    client = openai.OpenAI(api_key=setup.key, base_url=f"{setup.relay.base_url}/openai/v1", max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model=CODEX_MODEL, input="hello")
    shown = setup.account(account["id"])
    assert shown["status"] == "rate_limited"
    until = datetime.fromisoformat(shown["rate_limited_until"]).timestamp()
    assert abs(until - (time.time() + 7200)) < 60  # the plan's reset, not the default hour
    (log,) = setup.logs(expect=1)
    assert log["status"] == "error" and log["cost"] == 0


# -- Gemini Code Assist ----------------------------------------------------------------------------


def test_gemini_oauth_account_serves_through_code_assist(setup: OAuthSetup, upstream: Upstream) -> None:
    account = setup.onboard("gemini")
    project = account["extra"]["oauth"]["project_id"]
    assert project
    assert account["base_url"] == upstream.base_url  # the Code Assist root setting, not AI Studio
    token = current_access(upstream, "google")
    client = genai.Client(
        api_key=setup.key, http_options=genai_types.HttpOptions(base_url=f"{setup.relay.base_url}/gemini")
    )
    whole = client.models.generate_content(model=GEMINI_MODEL, contents="hello")
    assert whole.text and whole.usage_metadata.candidates_token_count > 0
    streamed = "".join(
        c.text or "" for c in client.models.generate_content_stream(model=GEMINI_MODEL, contents="x")
    )
    assert streamed
    counted = client.models.count_tokens(model=GEMINI_MODEL, contents="count me")
    assert counted.total_tokens > 0

    seen = upstream_calls(upstream, token)
    assert [c["endpoint"] for c in seen] == [
        "codeassist.generateContent",
        "codeassist.streamGenerateContent",
        "codeassist.countTokens",
    ]
    assert all(c.get("project") == project for c in seen[:2])
    logs = setup.logs(expect=3)
    served = [log for log in logs if log["output_tokens"] > 0]
    assert len(served) == 2 and all(log["account_id"] == account["id"] for log in served)


# -- several instances -----------------------------------------------------------------------------


def test_two_instances_refresh_a_shared_account_once(
    backend: Backend, upstream: Upstream, tmp_path: Path
) -> None:
    with two_instances(backend, tmp_path, relay_env(upstream, "0.2")) as (first, second):
        try:
            setup = OAuthSetup(first, upstream)
            before = token_calls(upstream, "claude")
            account = setup.onboard_expiring(120)
            deadline = time.monotonic() + 15
            while token_calls(upstream, "claude") == before:
                assert time.monotonic() < deadline, "nobody refreshed the expiring token"
                time.sleep(0.1)
            time.sleep(1.5)  # both sweepers have run several times since
            assert token_calls(upstream, "claude") == before + 1
            refreshed_token = current_access(upstream, "claude")
            # Both instances serve with the new token.
            for relay in (first, second):
                client = anthropic.Anthropic(api_key=setup.key, base_url=f"{relay.base_url}/claude")
                client.messages.create(
                    model=CLAUDE_MODEL, max_tokens=16, messages=[{"role": "user", "content": "x"}]
                )
            assert len(upstream_calls(upstream, refreshed_token)) == 2
            assert setup.account(account["id"])["status"] == "valid"
            setup.logs(expect=2)
        finally:
            mock_oauth(upstream, "/__mock/oauth/config", {"expires_in": {"claude": 28_800}})


def test_the_admin_probe_reads_subscription_answers(setup: OAuthSetup, upstream: Upstream) -> None:
    """The "test this account" button: Codex's streamed answer gathered, Code Assist's unwrapped,
    and a Claude answer whose unified limiter says "rejected" reported as a refusal."""
    codex = setup.onboard("openai")
    gemini = setup.onboard("gemini")
    claude = setup.onboard("claude")
    for account, model in ((codex, CODEX_MODEL), (gemini, GEMINI_MODEL), (claude, CLAUDE_MODEL)):
        probed = setup.admin.ok(
            "POST", "/api/admin/proxy/test", json={"account_id": account["id"], "model": model}
        )
        assert probed["success"] is True and probed["reply"].startswith("Hello from mock"), probed
        assert probed["usage"]["output_tokens"] > 0

    upstream.behave(current_access(upstream, "claude"), "rejected")
    probed = setup.admin.ok(
        "POST", "/api/admin/proxy/test", json={"account_id": claude["id"], "model": CLAUDE_MODEL}
    )
    assert probed["success"] is False and probed["status_code"] == 200
    assert "quota" in probed["message"] and probed["resets_at"] > time.time()


@pytest.fixture(scope="module")
def sleepy_relay(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayServer]:
    """A relay whose refresh sweep is an hour away: only requests find expired tokens."""
    relay = started_relay(tmp_path_factory.mktemp("sleepy-relay"), relay_env(upstream, "3600"))
    try:
        yield relay
    finally:
        relay.stop()


def test_an_expired_token_is_refreshed_before_the_request_is_sent(
    sleepy_relay: RelayServer, upstream: Upstream
) -> None:
    setup = OAuthSetup(sleepy_relay, upstream)
    before = token_calls(upstream, "claude")
    account = setup.onboard_expiring(1)
    old = current_access(upstream, "claude")
    time.sleep(1.5)  # expired by the clock; nothing has refreshed it
    client = anthropic.Anthropic(api_key=setup.key, base_url=f"{sleepy_relay.base_url}/claude", max_retries=0)
    client.messages.create(model=CLAUDE_MODEL, max_tokens=16, messages=HELLO)
    assert token_calls(upstream, "claude") == before + 1
    assert upstream_calls(upstream, old) == []  # never sent with the expired token
    assert len(upstream_calls(upstream, current_access(upstream, "claude"))) == 1
    (log,) = setup.logs(expect=1)
    assert log["account_id"] == account["id"] and log["status"] == "success"


def test_an_expired_token_that_cannot_be_refreshed_takes_the_account_out(
    sleepy_relay: RelayServer, upstream: Upstream
) -> None:
    setup = OAuthSetup(sleepy_relay, upstream)
    account = setup.onboard_expiring(1)
    old = current_access(upstream, "claude")
    fail_next_claude_refresh(upstream, 400, "invalid_grant", "Refresh token not found or invalid")
    time.sleep(1.5)
    client = anthropic.Anthropic(api_key=setup.key, base_url=f"{sleepy_relay.base_url}/claude", max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as refused:
        client.messages.create(model=CLAUDE_MODEL, max_tokens=16, messages=HELLO)
    assert refused.value.status_code == 503  # no account: not "all accounts busy"
    assert upstream_calls(upstream, old) == []
    assert setup.account(account["id"])["status"] == "token_expired"
    (log,) = setup.logs(expect=1)
    assert log["status"] == "error" and log["cost"] == 0


def test_a_refused_token_whose_refresh_must_wait_rests_the_account(
    setup: OAuthSetup, upstream: Upstream
) -> None:
    """401, and the token endpoint asks to come back in 10 minutes: the account rests that long
    (not `invalid`, which would need an admin), and its tokens stay as they are."""
    account = setup.onboard("claude")
    token = current_access(upstream, "claude")
    fail_next_claude_refresh(upstream, 503, "server_error", "temporarily unavailable", retry_after=600)
    mock_oauth(upstream, "/__mock/oauth/revoke", {"access_token": token})
    client = anthropic.Anthropic(api_key=setup.key, base_url=f"{setup.relay.base_url}/claude", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.create(model=CLAUDE_MODEL, max_tokens=16, messages=HELLO)
    shown = setup.account(account["id"])
    assert shown["status"] == "rate_limited"
    until = datetime.fromisoformat(shown["rate_limited_until"]).timestamp()
    assert abs(until - (time.time() + 600)) < 30
    assert "postponed" in shown["status_reason"] and "temporarily unavailable" in shown["status_reason"]
    (log,) = setup.logs(expect=1)
    assert log["status"] == "error"


def test_converted_chat_through_subscription_accounts(setup: OAuthSetup, upstream: Upstream) -> None:
    """OpenAI chat reaching a Claude OAuth account, and /gemini/v1/chat reaching Code Assist."""
    claude = setup.onboard("claude")
    claude_token = current_access(upstream, "claude")
    client = openai.OpenAI(api_key=setup.key, base_url=f"{setup.relay.base_url}/openai/v1", max_retries=0)
    messages: list[Any] = [{"role": "system", "content": "Short."}, {"role": "user", "content": "hi"}]
    reply = client.chat.completions.create(model=CLAUDE_MODEL, messages=messages, max_tokens=32)
    assert reply.choices[0].message.content and reply.usage is not None
    (call,) = upstream_calls(upstream, claude_token)
    assert call["headers"]["authorization"] == f"Bearer {claude_token}"
    assert call["json"]["system"][0]["text"] == "You are Claude Code, Anthropic's official CLI for Claude."
    assert call["json"]["system"][1]["text"] == "Short."

    gemini = setup.onboard("gemini")
    project = gemini["extra"]["oauth"]["project_id"]
    google_token = current_access(upstream, "google")
    url = f"{setup.relay.base_url}/gemini/v1/chat"
    body = {"model": GEMINI_MODEL, "messages": messages}
    whole = httpx.post(url, json=body, headers={"x-api-key": setup.key}, timeout=30)
    assert whole.status_code == 200, whole.text
    assert whole.json()["candidates"][0]["content"]["parts"][0]["text"].startswith("Hello from mock")
    streamed = httpx.post(url, json={**body, "stream": True}, headers={"x-api-key": setup.key}, timeout=30)
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.text.count("data: ") >= 2 and '"response"' not in streamed.text  # unwrapped
    seen = upstream_calls(upstream, google_token)
    assert [c["endpoint"] for c in seen] == ["codeassist.generateContent", "codeassist.streamGenerateContent"]
    assert all(c["project"] == project for c in seen)
    assert seen[0]["json"]["request"]["systemInstruction"]["parts"][0]["text"] == "Short."

    logs = setup.logs(expect=3)
    assert [log["account_id"] for log in reversed(logs)] == [claude["id"], gemini["id"], gemini["id"]]
    assert all(log["status"] == "success" and log["output_tokens"] > 0 and log["cost"] > 0 for log in logs)
