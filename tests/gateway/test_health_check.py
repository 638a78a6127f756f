"""Health checks through the real relay and the fake upstream: accounts the relay took out of
rotation come back when a probe succeeds (on demand, by the periodic sweep, by a triggered sweep),
stay out while the upstream still refuses, and are never billed or request-logged for it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from ..oauth_support import oauth_env
from ..support import Api, RelayServer
from .conftest import Pool, Upstream
from .restarts import Backend, started_relay, two_instances
from .test_oauth_serving import OAuthSetup, current_access, fail_next_claude_refresh, mock_oauth, token_calls

MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]
LEAKED = "sk-ant-api03-" + "Zq7" * 12  # a credential-shaped string an upstream might echo
FAVOURITE = {"priority": 1000, "weight": 1000}  # asked first
SPARE = {"priority": 1, "weight": 1}


def _claude(pool: Pool) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{pool.relay.base_url}/claude", api_key=pool.key, max_retries=0)


def _ask(pool: Pool) -> anthropic.types.Message:
    return _claude(pool).messages.create(model="claude-opus-4-8", max_tokens=20, messages=MESSAGES)


def _rate_limit(pool: Pool, *credentials: str, forever: bool = False) -> None:
    """Real traffic marks the accounts: the fake answers 429 (reset in an hour) to each once, or
    for good; the client gets the last 429."""
    for credential in credentials:
        pool.upstream.behave(credential, "429", count=-1 if forever else 1, retry_after=3600)
    with pytest.raises(anthropic.RateLimitError):
        _ask(pool)
    for credential in credentials:
        shown = pool.account(credential)
        assert shown["status"] == "rate_limited" and shown["rate_limited_until"], shown
    pool.settle()


def _check(pool: Pool, credential: str) -> dict[str, Any]:
    return pool.admin.ok("POST", f"/api/admin/accounts/{pool.accounts[credential]}/health-check")


def _status(pool: Pool) -> dict[str, Any]:
    return pool.admin.ok("GET", "/api/admin/health-check/status")


def _last_check(pool: Pool, credential: str) -> dict[str, Any] | None:
    account_id = pool.accounts[credential]
    row = next(a for a in _status(pool)["accounts"] if a["id"] == account_id)
    return row["last_check"]


def _trigger(pool: Pool) -> dict[str, Any]:
    """One sweep now (retried while a scheduled sweep happens to hold the lock)."""
    deadline = time.monotonic() + 30
    while True:
        status, body = pool.admin.post("/api/admin/health-check/trigger")
        if status != 409:
            assert status == 200, body
            return body["data"]  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


@pytest.fixture
def short_interval(pool: Pool) -> Iterator[Callable[[int], None]]:
    """Sets `health_check_interval` for this test; the default comes back afterwards."""

    def set_interval(seconds: int) -> None:
        pool.admin.ok("PUT", "/api/admin/configs", json={"key": "health_check_interval", "value": seconds})

    yield set_interval
    set_interval(300)


def test_a_check_brings_a_rate_limited_account_back(pool: Pool) -> None:
    only = pool.add_account()
    _rate_limit(pool, only)
    before = len(pool.upstream.requests_for(only))

    result = _check(pool, only)
    assert result["success"] is True and result["status_code"] == 200
    assert result["status_before"] == "rate_limited" and result["status"] == "valid"
    assert result["action"] == "recovered" and result["latency_ms"] >= 0 and result["checked_at"]
    assert len(pool.upstream.requests_for(only)) == before + 1  # one real upstream call

    shown = pool.account(only)
    assert shown["status"] == "valid" and shown["rate_limited_until"] is None
    assert "health check passed" in shown["status_reason"] and "rate_limited" in shown["status_reason"]
    assert _last_check(pool, only)["action"] == "recovered"  # type: ignore[index]

    pool.settle()
    assert _ask(pool).content[0].text.startswith("Hello from mock")
    # The probe is an admin action: neither billed nor request-logged (the 429 and this request are).
    pool.logs(expect=2)
    time.sleep(0.3)
    assert len(pool.logs(expect=2)) == 2


def test_a_check_that_still_fails_leaves_the_account_resting(pool: Pool) -> None:
    only = pool.add_account()
    _rate_limit(pool, only, forever=True)
    until = pool.account(only)["rate_limited_until"]
    try:
        result = _check(pool, only)
    finally:
        pool.upstream.behave(only, "ok")
    assert result["success"] is False and result["status_code"] == 429
    assert result["action"] == "none" and result["status"] == "rate_limited"
    shown = pool.account(only)
    assert shown["status"] == "rate_limited" and shown["rate_limited_until"] == until


def test_an_auth_failure_marks_the_account_and_a_later_check_brings_it_back(pool: Pool) -> None:
    only = pool.add_account()
    pool.upstream.behave(only, "401", count=1, body=f"invalid x-api-key {LEAKED}")
    refused = _check(pool, only)
    assert refused["success"] is False and refused["status_code"] == 401
    assert refused["action"] == "marked_invalid" and refused["status"] == "invalid"
    shown = pool.account(only)
    assert shown["status"] == "invalid" and shown["status_reason"].startswith("health check: HTTP 401")
    # Credentials an upstream echoes are masked wherever the check keeps them.
    for text in (refused["message"], shown["status_reason"], shown["last_error"], str(_status(pool))):
        assert LEAKED not in text and "sk-ant-api03-***" in text

    back = _check(pool, only)
    assert back["action"] == "recovered" and back["status_before"] == "invalid"
    assert pool.account(only)["status"] == "valid"


def test_a_plain_failure_of_a_valid_account_marks_nothing(pool: Pool) -> None:
    only = pool.add_account()
    pool.upstream.behave(only, "529", count=1)
    result = _check(pool, only)
    assert result["success"] is False and result["status_code"] == 529 and result["action"] == "none"
    assert pool.account(only)["status"] == "valid"


def test_the_periodic_sweep_brings_accounts_back_once_they_rested_an_interval(
    pool: Pool, short_interval: Callable[[int], None]
) -> None:
    back = pool.add_account(**FAVOURITE)
    still = pool.add_account(**SPARE)
    pool.upstream.behave(back, "429", count=1, retry_after=3600)
    pool.upstream.behave(still, "429", count=-1, retry_after=3600)
    try:
        with pytest.raises(anthropic.RateLimitError):
            _ask(pool)  # both tried, both marked until the reset an hour away
        assert pool.account(back)["status"] == pool.account(still)["status"] == "rate_limited"
        short_interval(2)
        deadline = time.monotonic() + 20
        while pool.account(back)["status"] != "valid":
            assert time.monotonic() < deadline, "the sweep did not bring the account back"
            time.sleep(0.2)
        deadline = time.monotonic() + 10
        while _last_check(pool, still) is None:
            assert time.monotonic() < deadline, "the sweep did not check the other account"
            time.sleep(0.2)
        # Checked, and still refused: it keeps resting (asserted before the fake is switched back).
        kept = _last_check(pool, still)
        assert kept is not None and kept["trigger"] == "schedule" and kept["status_code"] == 429
        assert kept["success"] is False and kept["status"] == "rate_limited"
        assert pool.account(still)["status"] == "rate_limited"
    finally:
        pool.upstream.behave(still, "ok")
    status = _status(pool)
    assert status["enabled"] is True and status["interval"] == 2
    assert status["last_run_at"] and status["next_run_at"] and status["last_run"]["trigger"] == "schedule"
    assert _last_check(pool, back)["action"] == "recovered"  # type: ignore[index]


def test_trigger_sweeps_now_and_leaves_manual_marks_alone(pool: Pool) -> None:
    overloaded = pool.add_account(**FAVOURITE)
    manual = pool.add_account(**SPARE)
    pool.upstream.behave(overloaded, "529", count=1)
    _ask(pool)  # served by the spare after the favourite's 529
    assert pool.account(overloaded)["status"] == "overloaded"
    pool.admin.ok(
        "PUT",
        f"/api/admin/accounts/{pool.accounts[manual]}/status",
        json={"status": "invalid", "reason": "paused by the operator"},
    )
    pool.settle()

    sweep = _trigger(pool)
    assert sweep["trigger"] == "manual" and sweep["started_at"] and sweep["finished_at"]
    mine = {r["account_id"]: r for r in sweep["results"]}
    assert mine[pool.accounts[overloaded]]["action"] == "recovered"
    assert pool.accounts[manual] not in mine and sweep["checked"] == len(sweep["results"])
    assert pool.account(overloaded)["status"] == "valid"
    assert pool.account(manual)["status"] == "invalid"  # set by hand: lasts until an admin changes it

    status = _status(pool)
    assert status["last_run"]["trigger"] == "manual"
    rows = {a["id"]: a for a in status["accounts"]}
    assert rows[pool.accounts[manual]]["sweep_candidate"] is False
    assert rows[pool.accounts[manual]]["last_check"] is None
    assert rows[pool.accounts[overloaded]]["last_check"]["trigger"] == "manual"


def test_check_and_refresh_refusals(pool: Pool) -> None:
    key_account = pool.add_account()
    account_id = pool.accounts[key_account]
    status, body = pool.admin.post(f"/api/admin/accounts/{account_id}/refresh-token")
    assert status == 400 and "does not use OAuth" in body["message"]
    for route in ("refresh-token", "health-check"):
        status, body = pool.admin.post(f"/api/admin/accounts/999999999/{route}")
        assert (status, body["message"]) == (404, "account not found"), route
    pool.admin.ok("PUT", f"/api/admin/accounts/{account_id}", json={"enabled": False})
    status, body = pool.admin.post(f"/api/admin/accounts/{account_id}/health-check")
    assert status == 400 and "disabled" in body["message"]


def test_users_are_refused_on_every_health_route(pool: Pool, make_user: Callable[..., Api]) -> None:
    user = make_user()
    account_id = pool.accounts[pool.add_account()]
    for method, path in (
        ("POST", f"/api/admin/accounts/{account_id}/health-check"),
        ("POST", f"/api/admin/accounts/{account_id}/refresh-token"),
        ("GET", "/api/admin/health-check/status"),
        ("POST", "/api/admin/health-check/trigger"),
    ):
        assert user.call(method, path) == (403, {"code": 403, "message": "需要管理员权限"}), path


# -- OAuth accounts (a relay of this module's own, its provider URLs on the fake providers) ---------


@pytest.fixture(scope="module")
def oauth_relay(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayServer]:
    relay = started_relay(tmp_path_factory.mktemp("health-oauth"), oauth_env(upstream.base_url))
    try:
        yield relay
    finally:
        relay.stop()


@pytest.fixture
def oauth(oauth_relay: RelayServer, upstream: Upstream) -> OAuthSetup:
    return OAuthSetup(oauth_relay, upstream)


def test_refresh_token_forces_one_refresh(oauth: OAuthSetup, upstream: Upstream) -> None:
    account = oauth.onboard("claude")
    old_token, before = current_access(upstream, "claude"), token_calls(upstream, "claude")
    answer = oauth.admin.ok("POST", f"/api/admin/accounts/{account['id']}/refresh-token")
    assert (
        answer["refreshed"] is True and answer["status"] == "valid" and answer["account_id"] == account["id"]
    )
    assert token_calls(upstream, "claude") == before + 1  # forced, though far from expiry
    assert current_access(upstream, "claude") != old_token
    shown = oauth.account(account["id"])
    assert shown["token_expires_at"] == answer["token_expires_at"] >= account["token_expires_at"]


def test_a_refused_refresh_token_is_reported_and_takes_the_account_out(
    oauth: OAuthSetup, upstream: Upstream
) -> None:
    account = oauth.onboard("claude")
    fail_next_claude_refresh(upstream, 400, "invalid_grant", "Refresh token not found or invalid")
    status, answer = oauth.admin.post(f"/api/admin/accounts/{account['id']}/refresh-token")
    assert status == 400, answer
    assert "Refresh token not found or invalid" in answer["message"] and "token_expired" in answer["message"]
    assert oauth.account(account["id"])["status"] == "token_expired"
    # The refusal was a one-off of the fake: a refresh that works again brings the account back.
    again = oauth.admin.ok("POST", f"/api/admin/accounts/{account['id']}/refresh-token")
    assert again["status"] == "valid"
    assert oauth.account(account["id"])["status_reason"] == "OAuth token refreshed by an admin"


def test_a_passing_token_endpoint_failure_is_explained_and_an_admin_may_retry_at_once(
    oauth: OAuthSetup, upstream: Upstream
) -> None:
    account = oauth.onboard("claude")
    before = token_calls(upstream, "claude")
    fail_next_claude_refresh(upstream, 503, "server_error", "temporarily unavailable", retry_after=600)
    status, answer = oauth.admin.post(f"/api/admin/accounts/{account['id']}/refresh-token")
    assert status == 400, answer
    assert "temporarily unavailable" in answer["message"] and "next try in 600s" in answer["message"]
    assert oauth.account(account["id"])["status"] == "valid"  # the current token keeps serving
    # Traffic waits the 600 s the endpoint asked for; an admin's explicit retry does not.
    again = oauth.admin.ok("POST", f"/api/admin/accounts/{account['id']}/refresh-token")
    assert again["refreshed"] is True
    assert token_calls(upstream, "claude") == before + 2


def test_refresh_token_needs_a_refresh_token(oauth: OAuthSetup) -> None:
    setup_token = oauth.admin.ok(
        "POST",
        "/api/admin/accounts",
        json={
            "name": f"setup-{uuid.uuid4().hex[:6]}",
            "type": "claude-official",
            "access_token": "sk-ant-oat01-" + uuid.uuid4().hex,
            "base_url": oauth.upstream.base_url,
        },
    )
    status, answer = oauth.admin.post(f"/api/admin/accounts/{setup_token['id']}/refresh-token")
    assert status == 400 and "no refresh token" in answer["message"]


def test_a_check_of_an_oauth_account_refreshes_a_refused_token(oauth: OAuthSetup, upstream: Upstream) -> None:
    account = oauth.onboard("claude")
    old = current_access(upstream, "claude")
    before = token_calls(upstream, "claude")
    mock_oauth(upstream, "/__mock/oauth/revoke", {"access_token": old})
    result = oauth.admin.ok("POST", f"/api/admin/accounts/{account['id']}/health-check")
    assert result["success"] is True and result["status"] == "valid" and result["action"] == "none"
    assert token_calls(upstream, "claude") == before + 1
    assert len(upstream.requests_for(current_access(upstream, "claude"))) == 1  # asked again, new token


# -- several instances -----------------------------------------------------------------------------


def test_two_instances_sweep_as_one_and_show_the_same_results(
    backend: Backend, upstream: Upstream, tmp_path: Path
) -> None:
    credential = f"up-{uuid.uuid4().hex[:12]}"
    with two_instances(backend, tmp_path) as (first, second):
        try:
            setup = OAuthSetup(first, upstream)  # an admin, a group and a key bound to it
            account = setup.admin.ok(
                "POST",
                "/api/admin/accounts",
                json={
                    "name": credential,
                    "type": "claude-official",
                    "api_key": credential,
                    "base_url": upstream.base_url,
                    "group_ids": [setup.group_id],
                },
            )
            setup.settle()
            upstream.behave(credential, "429", count=-1, retry_after=3600)
            client = anthropic.Anthropic(
                api_key=setup.key, base_url=f"{first.base_url}/claude", max_retries=0
            )
            with pytest.raises(anthropic.RateLimitError):
                client.messages.create(model="claude-opus-4-8", max_tokens=16, messages=MESSAGES)
            assert setup.account(account["id"])["status"] == "rate_limited"

            setup.admin.ok("PUT", "/api/admin/configs", json={"key": "health_check_interval", "value": 2})
            started = time.monotonic()
            time.sleep(9)
            probes = len(upstream.requests_for(credential)) - 1  # the relayed request itself
            elapsed = time.monotonic() - started
            # One sweep per interval across both instances (each alone would probe every ~2 s too).
            assert 1 <= probes <= elapsed / 2 + 1, probes

            other = Api(second.base_url, setup.admin.token)
            # A sweep (every 2 s) may land between the two reads on a slow box: read again then.
            for _ in range(5):
                views = [api.ok("GET", "/api/admin/health-check/status") for api in (setup.admin, other)]
                checks = [
                    next(a for a in v["accounts"] if a["id"] == account["id"])["last_check"] for v in views
                ]
                if checks[0] == checks[1] and views[0]["last_run"] == views[1]["last_run"]:
                    break
            assert checks[0] is not None and checks[0] == checks[1] and checks[0]["status_code"] == 429
            assert views[0]["last_run"] == views[1]["last_run"]
            assert setup.account(account["id"])["status"] == "rate_limited"
            other.close()
        finally:
            upstream.behave(credential, "ok")
