"""The vendors' authorize URLs and token endpoints: code exchange and refresh, one shape per vendor.

Claude's token endpoint takes JSON (in Claude Code's key order); OpenAI's and Google's take a
form, Google's with the Gemini CLI's public client secret. Every answer becomes a `TokenGrant`;
every failure an `OAuthError` classified for the refresher (see errors.py).

`refresh_grant` is what the background token refresher calls. It does not lock, store or retry:
refresh tokens rotate on every use (a reused one is dead), so its caller must hold a per-account
lock across instances, re-read the stored tokens inside it, and save the returned ones at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from ..config import Settings
from ..gateway.http_client import HttpClient
from . import clients
from .clients import CLAUDE, CLIENTS, GEMINI, OPENAI
from .errors import OAuthError
from .jwt import unverified_claims
from .transport import Transport, expect_json, send


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What a token endpoint granted. Token fields stay out of `repr`, so a logged grant leaks nothing."""

    flow: str
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    id_token: str | None = field(repr=False)
    expires_at: float | None  # epoch seconds; None when the vendor did not say
    scopes: tuple[str, ...]
    # Non-secret labels from the answer: email, account/organisation ids and names, plan.
    facts: dict[str, Any]

    def credentials(self) -> dict[str, str]:
        """The account credential fields this grant fills (the others are left as they are)."""
        found = {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "id_token": self.id_token,
        }
        return {k: v for k, v in found.items() if v}


def authorize_url(
    flow: str, settings: Settings, *, challenge: str, state: str, setup_token: bool = False
) -> str:
    """The vendor page the admin opens to log in."""
    client = CLIENTS[flow]
    if flow == CLAUDE:
        scopes = clients.CLAUDE_SETUP_SCOPES if setup_token else client.scopes
        params = [
            ("code", "true"),  # the callback page shows the code for pasting
            ("client_id", client.client_id),
            ("response_type", "code"),
            ("redirect_uri", client.redirect_uri),
            ("scope", " ".join(scopes)),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
            ("state", state),
        ]
        base = settings.oauth_claude_authorize_url
    elif flow == OPENAI:
        params = [
            ("response_type", "code"),
            ("client_id", client.client_id),
            ("redirect_uri", client.redirect_uri),
            ("scope", " ".join(client.scopes)),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
            ("state", state),
            *clients.OPENAI_AUTHORIZE_EXTRA,
        ]
        base = settings.oauth_openai_authorize_url
    else:
        params = [
            ("client_id", client.client_id),
            ("redirect_uri", client.redirect_uri),
            ("response_type", "code"),
            ("scope", " ".join(client.scopes)),
            # offline + consent: Google returns a refresh token only on a consent screen, and a
            # relay account without one dies within the hour.
            ("access_type", "offline"),
            ("prompt", "consent"),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
            ("state", state),
        ]
        base = settings.oauth_gemini_authorize_url
    return f"{base}{'&' if '?' in base else '?'}{urlencode(params)}"


def token_url(flow: str, settings: Settings) -> str:
    return {
        CLAUDE: settings.oauth_claude_token_url,
        OPENAI: settings.oauth_openai_token_url,
        GEMINI: settings.oauth_gemini_token_url,
    }[flow]


async def _token_call(
    flow: str, settings: Settings, transport: Transport, fields: dict[str, Any], *, what: str
) -> dict[str, Any]:
    headers = {"user-agent": clients.TOKEN_USER_AGENTS[flow]}
    url = token_url(flow, settings)
    if flow == CLAUDE:
        headers["accept"] = "application/json, text/plain, */*"
        answer = await send(transport, "POST", url, what=what, headers=headers, json=fields)
    else:
        headers["accept"] = "application/json"
        answer = await send(transport, "POST", url, what=what, headers=headers, form=fields)
    return expect_json(answer, what)


async def exchange_code(
    flow: str,
    code: str,
    *,
    verifier: str,
    state: str,
    settings: Settings,
    transport: Transport,
    setup_token: bool = False,
    scopes: tuple[str, ...] | None = None,
) -> TokenGrant:
    """The authorization_code grant. `scopes`: what was asked for, when the answer does not say."""
    client = CLIENTS[flow]
    fields: dict[str, Any]
    if flow == CLAUDE:
        # Claude Code's key order; the state goes along (Anthropic checks it).
        fields = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": client.redirect_uri,
            "client_id": client.client_id,
            "code_verifier": verifier,
            "state": state,
        }
        if setup_token:
            fields["expires_in"] = clients.CLAUDE_SETUP_EXPIRES_IN
    elif flow == OPENAI:
        fields = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": client.redirect_uri,
            "client_id": client.client_id,
            "code_verifier": verifier,
        }
    else:
        fields = {
            "code": code,
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "redirect_uri": client.redirect_uri,
            "grant_type": "authorization_code",
            "code_verifier": verifier,
        }
    body = await _token_call(flow, settings, transport, fields, what=f"{flow} token endpoint")
    return grant_from(flow, body, previous_refresh=None, requested=scopes or client.scopes)


async def refresh_grant(
    flow: str,
    refresh_token: str,
    *,
    settings: Settings,
    http: HttpClient,
    proxy_url: str | None,
) -> TokenGrant:
    """One refresh_token grant. The answer's refresh token replaces `refresh_token`; when the vendor
    sends none, the grant carries `refresh_token` on. Raises OAuthError: `terminal` when the grant
    is dead (log in again), else retry later (after `retry_after` when given)."""
    if flow not in CLIENTS:
        raise ValueError(f"unknown OAuth flow {flow!r}")
    if not refresh_token:
        raise OAuthError(f"{flow}: the account has no refresh token; log in again", terminal=True)
    client = CLIENTS[flow]
    fields: dict[str, str]
    if flow == CLAUDE:
        fields = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client.client_id,
        }
    elif flow == OPENAI:
        fields = {
            "grant_type": "refresh_token",
            "client_id": client.client_id,
            "refresh_token": refresh_token,
            "scope": clients.OPENAI_REFRESH_SCOPE,
        }
    else:
        fields = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        }
    transport = Transport(http, proxy_url)
    body = await _token_call(flow, settings, transport, fields, what=f"{flow} token refresh")
    return grant_from(flow, body, previous_refresh=refresh_token, requested=client.scopes)


def _str(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _expires_at(body: dict[str, Any], access_token: str) -> float | None:
    expires_in = body.get("expires_in")
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and 0 < expires_in < 1e10:
        return time.time() + float(expires_in)
    # OpenAI's access tokens are JWTs: their `exp` says it when the answer does not.
    exp = unverified_claims(access_token).get("exp")
    if isinstance(exp, int | float) and not isinstance(exp, bool) and 0 < exp < 1e11:
        return float(exp)
    return None


def _claude_facts(body: dict[str, Any]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    org = body.get("organization")
    if isinstance(org, dict):
        facts["organization_uuid"] = _str(org.get("uuid"))
        facts["organization_name"] = _str(org.get("name"))
    account = body.get("account")
    if isinstance(account, dict):
        facts["account_uuid"] = _str(account.get("uuid"))
        facts["email"] = _str(account.get("email_address")) or _str(account.get("email"))
    return facts


def _openai_facts(id_token: str | None, access_token: str) -> dict[str, Any]:
    claims = unverified_claims(id_token)
    auth = claims.get(clients.OPENAI_AUTH_CLAIM)
    if not isinstance(auth, dict):
        # A refresh may come without an id_token; the access token carries the same claim.
        auth = unverified_claims(access_token).get(clients.OPENAI_AUTH_CLAIM)
    auth = auth if isinstance(auth, dict) else {}
    return {
        "email": _str(claims.get("email")),
        "chatgpt_account_id": _str(auth.get("chatgpt_account_id")),
        "chatgpt_user_id": _str(auth.get("chatgpt_user_id")) or _str(auth.get("user_id")),
        "plan_type": _str(auth.get("chatgpt_plan_type")),
    }


def grant_from(
    flow: str, body: dict[str, Any], *, previous_refresh: str | None, requested: tuple[str, ...]
) -> TokenGrant:
    """A TokenGrant from a token endpoint's 2xx JSON answer."""
    access_token = _str(body.get("access_token"))
    if access_token is None:
        raise OAuthError(f"{flow} token endpoint: the answer carries no access_token")
    id_token = _str(body.get("id_token"))
    scope = _str(body.get("scope"))
    if flow == CLAUDE:
        facts = _claude_facts(body)
    elif flow == OPENAI:
        facts = _openai_facts(id_token, access_token)
    else:
        facts = {"email": _str(unverified_claims(id_token).get("email"))}
    return TokenGrant(
        flow=flow,
        access_token=access_token,
        refresh_token=_str(body.get("refresh_token")) or previous_refresh,
        id_token=id_token,
        expires_at=_expires_at(body, access_token),
        scopes=tuple(scope.split()) if scope else requested,
        facts={k: v for k, v in facts.items() if v},
    )
