"""The fake OAuth providers behave like the real ones where a relay can get it wrong, and the
relay's grant functions (`exchange_code`, `refresh_grant`) classify every vendor answer right.

Everything runs in-process against `MockUpstream` on 127.0.0.1.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import anthropic
import pytest
import pytest_asyncio

from aiproxy.config import Settings
from aiproxy.gateway.http_client import HttpClient
from aiproxy.mock_upstream import MockUpstream
from aiproxy.mock_upstream import oauth as fake
from aiproxy.oauth import OAuthError, TokenGrant, exchange_code, refresh_grant
from aiproxy.oauth import clients as oauth_clients
from aiproxy.oauth.code_assist import ProjectRequired, discover_project
from aiproxy.oauth.grants import authorize_url
from aiproxy.oauth.jwt import unverified_claims
from aiproxy.oauth.pkce import challenge_of, new_state, new_verifier, parse_pasted
from aiproxy.oauth.transport import Transport

from ..oauth_support import oauth_settings

FLOWS = ["claude", "openai", "gemini"]
VENDOR = {"claude": "claude", "openai": "openai", "gemini": "google"}


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def upstream() -> AsyncIterator[MockUpstream]:
    async with MockUpstream() as up:
        yield up


@pytest.fixture(autouse=True)
def _fresh(upstream: MockUpstream) -> None:
    upstream.reset()
    upstream.oauth.reset()


@pytest.fixture
def settings(upstream: MockUpstream) -> Settings:
    return oauth_settings(upstream.base_url)


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest_asyncio.fixture(loop_scope="session")
async def outbound() -> AsyncIterator[HttpClient]:
    """The relay's own client, as the OAuth steps use it in the relay."""
    client = HttpClient()
    yield client
    await client.close()


async def browser_login(
    http: aiohttp.ClientSession,
    outbound: HttpClient,
    settings: Settings,
    flow: str,
    *,
    setup_token: bool = False,
) -> TokenGrant:
    """What an admin does: open the authorize URL, log in, paste the code back."""
    verifier, state = new_verifier(), new_state()
    url = authorize_url(
        flow, settings, challenge=challenge_of(verifier), state=state, setup_token=setup_token
    )
    async with http.get(url, allow_redirects=False) as response:
        assert response.status == 302, await response.text()
        location = response.headers["Location"]
    pasted = parse_pasted(location)
    assert pasted.state == state
    return await exchange_code(
        flow,
        pasted.code,
        verifier=verifier,
        state=state,
        settings=settings,
        transport=Transport(outbound),
        setup_token=setup_token,
    )


async def post(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.post(url, allow_redirects=False, **kw) as response:
        return response.status, await response.json(content_type=None)


# --- authorize and code exchange ----------------------------------------------------------------------


@pytest.mark.parametrize("flow", FLOWS)
async def test_login_gives_each_vendor_shape(
    flow: str, http: aiohttp.ClientSession, settings: Settings, outbound: HttpClient
) -> None:
    grant = await browser_login(http, outbound, settings, flow)
    assert grant.access_token and grant.refresh_token and grant.expires_at
    issued = grant.expires_at - fake.DEFAULT_EXPIRES_IN[VENDOR[flow]]
    assert abs(issued - time.time()) < 30
    if flow == "claude":
        assert grant.access_token.startswith("sk-ant-oat01-")
        assert grant.facts == {
            "organization_uuid": fake.CHAT_ORG["uuid"],
            "organization_name": fake.CHAT_ORG["name"],
            "account_uuid": fake.CLAUDE_ACCOUNT_UUID,
            "email": fake.CLAUDE_EMAIL,
        }
        assert grant.scopes == oauth_clients.CLAUDE_CLIENT.scopes
    elif flow == "openai":
        assert grant.id_token and unverified_claims(grant.id_token)["email"] == fake.OPENAI_EMAIL
        assert grant.facts == {
            "email": fake.OPENAI_EMAIL,
            "chatgpt_account_id": fake.CHATGPT_ACCOUNT_ID,
            "chatgpt_user_id": fake.CHATGPT_USER_ID,
            "plan_type": fake.CHATGPT_PLAN,
        }
    else:
        assert grant.access_token.startswith("ya29.")
        assert grant.facts == {"email": fake.GOOGLE_EMAIL}
        assert grant.scopes == oauth_clients.GEMINI_CLIENT.scopes
    assert "access_token" not in repr(grant) and grant.access_token not in repr(grant)


async def test_claude_setup_token_lives_a_year_without_refresh(
    upstream: MockUpstream, http: aiohttp.ClientSession, settings: Settings, outbound: HttpClient
) -> None:
    grant = await browser_login(http, outbound, settings, "claude", setup_token=True)
    assert grant.refresh_token is None and grant.scopes == ("user:inference",)
    assert grant.expires_at and grant.expires_at - time.time() > 364 * 86400
    sent = next(c for c in upstream.oauth.calls if c["endpoint"] == "authorization_code")
    assert sent["body"]["expires_in"] == 31_536_000
    assert list(sent["body"])[:6] == [
        "grant_type",
        "code",
        "redirect_uri",
        "client_id",
        "code_verifier",
        "state",
    ]
    assert sent["headers"]["content-type"] == "application/json"
    assert sent["headers"]["user-agent"] == oauth_clients.CLAUDE_TOKEN_USER_AGENT


async def test_codes_are_single_use_and_bound_to_the_verifier(
    upstream: MockUpstream, http: aiohttp.ClientSession, settings: Settings, outbound: HttpClient
) -> None:
    verifier, state = new_verifier(), new_state()
    url = authorize_url("claude", settings, challenge=challenge_of(verifier), state=state)
    async with http.get(url, allow_redirects=False) as response:
        code = parse_pasted(response.headers["Location"]).code
    transport = Transport(outbound)
    with pytest.raises(OAuthError) as wrong:
        await exchange_code(
            "claude", code, verifier=new_verifier(), state=state, settings=settings, transport=transport
        )
    assert wrong.value.status == 400 and "code_verifier does not match" in wrong.value.message
    # The refused attempt spent the code, as real servers do.
    with pytest.raises(OAuthError) as spent:
        await exchange_code(
            "claude", code, verifier=verifier, state=state, settings=settings, transport=transport
        )
    assert spent.value.code == "invalid_grant" and "already used" in spent.value.message


async def test_authorize_refuses_a_foreign_client(http: aiohttp.ClientSession, settings: Settings) -> None:
    url = authorize_url("openai", settings, challenge=challenge_of(new_verifier()), state="s")
    async with http.get(url.replace("client_id=app_", "client_id=other_"), allow_redirects=False) as response:
        assert response.status == 400
        assert (await response.json())["error_description"] == "unknown client_id"


async def test_token_endpoints_check_the_body_format(
    upstream: MockUpstream, http: aiohttp.ClientSession
) -> None:
    claude_form = {"grant_type": "refresh_token", "refresh_token": "x", "client_id": "y"}
    status, body = await post(http, upstream.url("/claude/v1/oauth/token"), data=claude_form)
    assert (status, body["error"]) == (400, "invalid_request")
    status, body = await post(http, upstream.url("/openai/oauth/token"), json=claude_form)
    assert (status, body["error"]) == (400, "invalid_request")
    google = {
        "grant_type": "refresh_token",
        "refresh_token": "x",
        "client_id": oauth_clients.GEMINI_CLIENT.client_id,
    }
    status, body = await post(http, upstream.url("/google/token"), data=google)  # no client_secret
    assert (status, body["error"]) == (401, "invalid_client")


# --- refresh_grant: rotation and classification --------------------------------------------------------


@pytest.mark.parametrize("flow", FLOWS)
async def test_refresh_rotates_and_a_reused_token_is_terminal(
    flow: str, upstream: MockUpstream, http: aiohttp.ClientSession, settings: Settings, outbound: HttpClient
) -> None:
    first = await browser_login(http, outbound, settings, flow)
    assert first.refresh_token
    second = await refresh_grant(flow, first.refresh_token, settings=settings, http=outbound, proxy_url=None)
    assert second.access_token != first.access_token
    assert second.refresh_token and second.refresh_token != first.refresh_token
    assert second.expires_at and second.facts.get("email")
    third = await refresh_grant(flow, second.refresh_token, settings=settings, http=outbound, proxy_url=None)
    assert third.refresh_token not in (first.refresh_token, second.refresh_token)
    with pytest.raises(OAuthError) as reused:
        await refresh_grant(flow, first.refresh_token, settings=settings, http=outbound, proxy_url=None)
    error = reused.value
    assert error.terminal and error.retry_after is None
    if flow == "openai":
        assert (error.status, error.code) == (401, "refresh_token_reused")
        assert "already been used" in error.message
    else:
        assert (error.status, error.code) == (400, "invalid_grant")
        expected = "Refresh token not found or invalid" if flow == "claude" else "expired or revoked"
        assert expected in error.message
    assert upstream.oauth.stats()[VENDOR[flow]]["refresh_token"] == 3
    sent = next(c for c in upstream.oauth.calls if c["endpoint"] == "refresh_token")
    if flow == "claude":
        assert sent["body"] == {
            "grant_type": "refresh_token",
            "refresh_token": first.refresh_token,
            "client_id": oauth_clients.CLAUDE_CLIENT.client_id,
        }
    elif flow == "openai":
        assert sent["body"]["scope"] == "openid profile email"
        assert sent["headers"]["content-type"] == "application/x-www-form-urlencoded"
    else:
        assert sent["body"]["client_secret"] == oauth_clients.GEMINI_CLIENT.client_secret


async def test_refresh_429_and_5xx_are_retryable(
    upstream: MockUpstream, http: aiohttp.ClientSession, settings: Settings, outbound: HttpClient
) -> None:
    grant = await browser_login(http, outbound, settings, "claude")
    assert grant.refresh_token
    upstream.oauth.fail_next(429, retry_after=7, grant_type="refresh_token")
    with pytest.raises(OAuthError) as limited:
        await refresh_grant("claude", grant.refresh_token, settings=settings, http=outbound, proxy_url=None)
    assert (limited.value.status, limited.value.terminal, limited.value.retry_after) == (429, False, 7.0)
    upstream.oauth.fail_next(500, vendor="claude")
    with pytest.raises(OAuthError) as broken:
        await refresh_grant("claude", grant.refresh_token, settings=settings, http=outbound, proxy_url=None)
    assert (broken.value.status, broken.value.terminal) == (500, False)
    assert "server_error" in broken.value.message
    # Neither failure spent the refresh token.
    fresh = await refresh_grant(
        "claude", grant.refresh_token, settings=settings, http=outbound, proxy_url=None
    )
    assert fresh.refresh_token != grant.refresh_token


async def test_refresh_network_failure_is_retryable(
    http: aiohttp.ClientSession, outbound: HttpClient
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = oauth_settings(f"http://127.0.0.1:{port}")  # nothing listens there
    with pytest.raises(OAuthError) as failed:
        await refresh_grant("openai", "rt_x", settings=settings, http=outbound, proxy_url=None)
    assert (failed.value.status, failed.value.terminal) == (0, False)
    assert "cannot reach 127.0.0.1" in failed.value.message


async def test_refresh_keeps_the_refresh_token_when_none_comes_back(
    upstream: MockUpstream, http: aiohttp.ClientSession, settings: Settings, outbound: HttpClient
) -> None:
    body = {"access_token": "sk-ant-oat01-" + "a" * 40, "expires_in": 60, "token_type": "Bearer"}
    upstream.oauth.fail_next(200, body=body)  # a queued answer may be a success too
    grant = await refresh_grant(
        "claude", "sk-ant-ort01-old", settings=settings, http=outbound, proxy_url=None
    )
    assert grant.refresh_token == "sk-ant-ort01-old" and grant.access_token == body["access_token"]


# --- vendor APIs refuse revoked and expired tokens ------------------------------------------------------


async def test_revoked_and_expired_tokens_get_401_from_the_vendor_api(
    upstream: MockUpstream, http: aiohttp.ClientSession, settings: Settings, outbound: HttpClient
) -> None:
    grant = await browser_login(http, outbound, settings, "claude")
    client = anthropic.AsyncAnthropic(
        base_url=upstream.base_url, auth_token=grant.access_token, max_retries=0
    )
    ok = await client.messages.create(
        model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
    assert ok.content
    async with http.post(
        upstream.url("/__mock/oauth/revoke"), json={"access_token": grant.access_token}
    ) as r:
        assert (await r.json()) == {"ok": True, "revoked": True}
    with pytest.raises(anthropic.AuthenticationError) as refused:
        await client.messages.create(
            model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.body["error"] == {  # type: ignore[index]
        "type": "authentication_error",
        "message": "OAuth token has expired. Please obtain a new token or refresh your existing token.",
    }
    upstream.oauth.configure({"expires_in": {"google": 0}})
    expired = await browser_login(http, outbound, settings, "gemini")
    async with http.post(
        upstream.url("/v1internal:loadCodeAssist"),
        json={"metadata": {}},
        headers={"Authorization": f"Bearer {expired.access_token}"},
    ) as response:
        assert response.status == 401
        assert (await response.json())["error"]["status"] == "UNAUTHENTICATED"


# --- claude.ai cookie flow -----------------------------------------------------------------------------


async def test_cookie_endpoints(upstream: MockUpstream, http: aiohttp.ClientSession) -> None:
    orgs_url = upstream.url("/claude/api/organizations")
    for key, status in (
        ("sk-ant-sid01-expired", 401),
        ("sk-ant-sid01-cloudflare", 302),
        ("x-challenge", 403),
    ):
        async with http.get(orgs_url, headers={"Cookie": f"sessionKey={key}"}, allow_redirects=False) as r:
            assert r.status == status, key
    async with http.get(orgs_url, headers={"Cookie": "sessionKey=sk-ant-sid01-good"}) as r:
        orgs = await r.json()
    assert [o["uuid"] for o in orgs if "chat" in o["capabilities"]] == [fake.CHAT_ORG["uuid"]]
    state = new_state()
    body = {
        "response_type": "code",
        "client_id": oauth_clients.CLAUDE_CLIENT.client_id,
        "organization_uuid": fake.CHAT_ORG["uuid"],
        "redirect_uri": oauth_clients.CLAUDE_CLIENT.redirect_uri,
        "scope": " ".join(oauth_clients.CLAUDE_COOKIE_SCOPES),
        "state": state,
        "code_challenge": challenge_of(new_verifier()),
        "code_challenge_method": "S256",
    }
    url = upstream.url(f"/claude/v1/oauth/{fake.CHAT_ORG['uuid']}/authorize")
    status, answer = await post(http, url, json=body, headers={"Cookie": "sessionKey=sk-ant-sid01-good"})
    assert status == 200
    query = parse_qs(urlsplit(answer["redirect_uri"]).query)
    assert query["state"] == [state] and query["code"][0].startswith("mock-claude-code-")
    status, answer = await post(
        http,
        url,
        json={**body, "scope": "org:create_api_key user:inference"},
        headers={"Cookie": "sessionKey=k"},
    )
    assert status == 400 and "browser" in answer["error"]["message"]


# --- Code Assist -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "project_id", "expected"),
    [
        ("assigned", None, (fake.ASSIGNED_PROJECT, "standard-tier")),
        ("onboard", None, (fake.FREE_PROJECT, "free-tier")),
        ("user-project", "my-gcp-project", ("my-gcp-project", "standard-tier")),
    ],
)
async def test_code_assist_discovery(
    mode: str,
    project_id: str | None,
    expected: tuple[str, str],
    upstream: MockUpstream,
    http: aiohttp.ClientSession,
    settings: Settings,
    outbound: HttpClient,
) -> None:
    grant = await browser_login(http, outbound, settings, "gemini")
    upstream.oauth.configure({"code_assist": {"mode": mode, "pending_polls": 2}})
    placement = await discover_project(
        settings, Transport(outbound), grant.access_token, project_id, delays=(0.01,) * 3
    )
    assert (placement.project_id, placement.tier) == expected
    polls = upstream.oauth.stats()["google"].get("onboardUser", 0)
    assert polls == {"assigned": 0, "onboard": 3, "user-project": 1}[mode]


async def test_code_assist_asks_for_a_project(
    upstream: MockUpstream, http: aiohttp.ClientSession, settings: Settings, outbound: HttpClient
) -> None:
    grant = await browser_login(http, outbound, settings, "gemini")
    upstream.oauth.configure({"code_assist": "user-project"})
    with pytest.raises(ProjectRequired) as required:
        await discover_project(settings, Transport(outbound), grant.access_token, None)
    assert required.value.message.startswith("project_id:")


# --- knobs over HTTP -------------------------------------------------------------------------------------


async def test_admin_knobs(
    upstream: MockUpstream, http: aiohttp.ClientSession, settings: Settings, outbound: HttpClient
) -> None:
    config = {
        "expires_in": 120,
        "fail": {"status": 503, "vendor": "openai", "count": 2},
        "code_assist": "onboard",
    }
    status, answer = await post(http, upstream.url("/__mock/oauth/config"), json=config)
    assert status == 200
    assert answer["expires_in"] == {"claude": 120, "openai": 120, "google": 120}
    assert answer["fail"][0]["count"] == 2 and answer["code_assist"]["mode"] == "onboard"
    status, answer = await post(http, upstream.url("/__mock/oauth/config"), json={"code_assist": "nope"})
    assert status == 400
    grant = await browser_login(http, outbound, settings, "claude")
    async with http.get(upstream.url("/__mock/oauth/tokens")) as r:
        tokens = await r.json()
    assert [t["access_token"] for t in tokens] == [grant.access_token]
    assert tokens[0]["vendor"] == "claude" and tokens[0]["grant_type"] == "authorization_code"
    async with http.get(upstream.url("/__mock/oauth/stats")) as r:
        assert (await r.json())["claude"] == {"authorize": 1, "authorization_code": 1}
    status, _ = await post(http, upstream.url("/__mock/oauth/reset"))
    assert status == 200 and upstream.oauth.tokens() == []
