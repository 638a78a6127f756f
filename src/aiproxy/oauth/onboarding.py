"""Onboarding: from a login session (or a claude.ai cookie) to a stored, encrypted OAuth account.

The admin routes (`api/admin/oauth.py`) are thin: they validate bodies and call `start`,
`exchange` and `cookie_login` here. Each step that talks to a vendor runs without a database
connection held (a Code Assist onboarding can take seconds); the account is read again for the
write. Nothing is stored unless every vendor step succeeded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..config import Settings
from ..errors import BadRequest, NotFound
from ..gateway.http_client import HttpClient
from ..security.secretbox import SecretBox, SecretBoxError
from ..store.accounts import ACCOUNT_TYPES, commit_pool_change, decrypt_credentials, encrypt_credentials
from ..store.models import Account, ProxyConfig
from ..store.proxies import proxy_url
from ..store.state import SharedState
from . import claude_cookie, clients, sessions
from .clients import CLAUDE, GEMINI, OPENAI
from .code_assist import Placement, discover_project
from .errors import OAuthError
from .grants import TokenGrant, authorize_url, exchange_code
from .pkce import Pasted, challenge_of, new_session_id, new_state, new_verifier, parse_pasted
from .sessions import OAuthSession
from .transport import Transport

# What `type`/`platform` may say, and the (flow, type of a new account) each name means.
KINDS: dict[str, tuple[str, str]] = {
    "claude": (CLAUDE, "claude-official"),
    "claude-official": (CLAUDE, "claude-official"),
    "claude-console": (CLAUDE, "claude-console"),
    "openai": (OPENAI, "openai-responses"),
    "openai-responses": (OPENAI, "openai-responses"),
    "codex": (OPENAI, "openai-responses"),
    "gemini": (GEMINI, "gemini"),
}
TOKEN_FIELDS = ("access_token", "refresh_token", "id_token")
# Statuses a fresh login cures; a cooldown (rate_limited, overloaded) ends by itself instead.
CURED_STATUSES = frozenset({"token_expired", "invalid"})
_LABELS = {CLAUDE: "Claude", OPENAI: "Codex", GEMINI: "Gemini"}


@dataclass(frozen=True, slots=True)
class Context:
    settings: Settings
    state: SharedState
    box: SecretBox
    client: HttpClient  # the gateway's (`UpstreamClients.http`)

    async def transport(self, proxy: str | None) -> Transport:
        return Transport(self.client, proxy)


def resolve_kind(value: str | None) -> tuple[str, str]:
    if value is None or value.strip().lower() not in KINDS:
        raise BadRequest(f"type: must be one of {', '.join(KINDS)}")
    return KINDS[value.strip().lower()]


@dataclass(frozen=True, slots=True)
class Route:
    """Where a login's vendor calls go, decided before any of them is made."""

    proxy_url: str | None
    account_type: str | None  # the re-logged-in account's type, None for a new account


async def _proxy(db: AsyncSession, box: SecretBox, proxy_id: int | None, *, field: str) -> str | None:
    if proxy_id is None:
        default = await db.scalar(
            select(ProxyConfig)
            .where(ProxyConfig.is_default.is_(True), ProxyConfig.enabled.is_(True))
            .order_by(ProxyConfig.id)
            .limit(1)
        )
        proxy = default
    else:
        proxy = await db.get(ProxyConfig, proxy_id)
        if proxy is None:
            raise BadRequest(f"{field}: proxy config not found")
        if not proxy.enabled:
            # Going direct instead would show the vendor the relay's own address.
            raise BadRequest(f"{field}: proxy config {proxy.id} is disabled; enable it or choose another")
    if proxy is None:
        return None
    try:
        return proxy_url(proxy, box)
    except SecretBoxError:
        raise BadRequest(f"{field}: the proxy's stored password cannot be decrypted, set it again") from None


async def plan_route(
    db: AsyncSession, box: SecretBox, flow: str, *, proxy_config_id: int | None, account_id: int | None
) -> Route:
    """Check the account to re-login (exists, same flow) and pick the proxy: the one asked for,
    else the account's, else the default enabled one."""
    account_type = None
    field = "proxy_config_id"
    if account_id is not None:
        account = await db.get(Account, account_id)
        if account is None:
            raise NotFound("account not found")
        kind = ACCOUNT_TYPES.get(account.type)
        if kind is None or kind.oauth != flow:
            raise BadRequest(
                f"account_id: account {account.id} is a {account.type} account, "
                f"which the {flow} login does not onboard"
            )
        account_type = account.type
        if proxy_config_id is None and account.proxy_config_id is not None:
            proxy_config_id, field = account.proxy_config_id, "account's proxy_config_id"
    return Route(await _proxy(db, box, proxy_config_id, field=field), account_type)


async def start(
    ctx: Context,
    db: AsyncSession,
    kind: str | None,
    *,
    proxy_config_id: int | None,
    account_id: int | None,
    setup_token: bool,
    project_id: str | None,
) -> dict[str, Any]:
    """A new login session and the vendor URL that starts it."""
    flow, account_type = resolve_kind(kind)
    if setup_token and flow != CLAUDE:
        raise BadRequest("setup_token: only Claude has setup tokens")
    await plan_route(db, ctx.box, flow, proxy_config_id=proxy_config_id, account_id=account_id)
    verifier, state = new_verifier(), new_state()
    session = OAuthSession(
        id=new_session_id(),
        flow=flow,
        account_type=account_type,
        verifier=verifier,
        state=state,
        expires_at=time.time() + sessions.SESSION_TTL,
        proxy_config_id=proxy_config_id,
        account_id=account_id,
        setup_token=setup_token,
        project_id=project_id if flow == GEMINI else None,
    )
    await sessions.save(ctx.state, ctx.box, session)
    url = authorize_url(
        flow, ctx.settings, challenge=challenge_of(verifier), state=state, setup_token=setup_token
    )
    return {
        "auth_url": url,
        "session_id": session.id,
        "flow": flow,
        "type": account_type,
        "redirect_uri": clients.CLIENTS[flow].redirect_uri,
        "expires_in": int(sessions.SESSION_TTL),
        "setup_token": setup_token,
    }


@dataclass(frozen=True, slots=True)
class Stored:
    account: Account
    created: bool


async def exchange(
    ctx: Context,
    db: AsyncSession,
    *,
    session_id: str,
    code: str | None,
    kind: str | None,
    name: str | None,
    account_id: int | None,
    project_id: str | None,
) -> Stored:
    """Finish a login session (see sessions.py for what a failure does to it)."""
    session = await sessions.take(ctx.state, ctx.box, session_id)
    pasted: Pasted | None = None
    try:
        if kind is not None and resolve_kind(kind)[0] != session.flow:
            raise BadRequest(f"type: this login session is a {session.flow} login")
        account_id = account_id if account_id is not None else session.account_id
        route = await plan_route(
            db, ctx.box, session.flow, proxy_config_id=session.proxy_config_id, account_id=account_id
        )
        grant = session.pending_grant()
        if grant is None:
            if not code:
                raise BadRequest("code: required")
            pasted = parse_pasted(code)
    except Exception:
        await sessions.put_back(ctx.state, ctx.box, session)
        raise
    if pasted is not None and pasted.state is not None and pasted.state != session.state:
        await sessions.mark_used(ctx.state, session.id)  # burnt: see sessions.py
        raise OAuthError("code: the state in the pasted text is not this login session's; start a new login")
    await db.close()  # no database connection held during the vendor calls
    transport = await ctx.transport(route.proxy_url)
    if grant is None:
        assert pasted is not None  # set above whenever no grant is pending
        try:
            grant = await exchange_code(
                session.flow,
                pasted.code,
                verifier=session.verifier,
                state=session.state,
                settings=ctx.settings,
                transport=transport,
                setup_token=session.setup_token,
                scopes=clients.CLAUDE_SETUP_SCOPES if session.setup_token else None,
            )
        except OAuthError:
            await sessions.put_back(ctx.state, ctx.box, session)
            raise
    # From here on the code is spent: a failure keeps the tokens for the next attempt.
    try:
        placement = None
        if session.flow == GEMINI:
            project = project_id or session.project_id
            placement = await discover_project(ctx.settings, transport, grant.access_token, project)
        stored = await store(
            ctx,
            db,
            grant,
            account_id=account_id,
            account_type=session.account_type,
            name=name,
            proxy_config_id=session.proxy_config_id,
            setup_token=session.setup_token,
            placement=placement,
        )
    except Exception:
        await sessions.put_back(ctx.state, ctx.box, session.with_pending(grant))
        raise
    await sessions.mark_used(ctx.state, session.id)
    return stored


async def cookie_login(
    ctx: Context,
    db: AsyncSession,
    *,
    cookie: str,
    kind: str | None,
    name: str | None,
    account_id: int | None,
    proxy_config_id: int | None,
    setup_token: bool,
) -> Stored:
    """Claude via a claude.ai sessionKey: organizations, authorize, exchange (OAUTH.md §1.5)."""
    flow, account_type = resolve_kind(kind or "claude")
    if flow != CLAUDE:
        raise BadRequest("type: the cookie flow is for Claude accounts only")
    header = claude_cookie.cookie_header(cookie)
    route = await plan_route(db, ctx.box, flow, proxy_config_id=proxy_config_id, account_id=account_id)
    await db.close()
    transport = await ctx.transport(route.proxy_url)
    orgs = await claude_cookie.organizations(ctx.settings, transport, header)
    org = claude_cookie.chat_organization(orgs)
    verifier, state = new_verifier(), new_state()
    scopes = clients.CLAUDE_SETUP_SCOPES if setup_token else clients.CLAUDE_COOKIE_SCOPES
    code = await claude_cookie.authorize(
        ctx.settings, transport, header, org, challenge=challenge_of(verifier), state=state, scopes=scopes
    )
    grant = await exchange_code(
        CLAUDE,
        code,
        verifier=verifier,
        state=state,
        settings=ctx.settings,
        transport=transport,
        setup_token=setup_token,
        scopes=scopes,
    )
    if "organization_uuid" not in grant.facts:  # the token answer normally names it; else we know
        grant = replace(grant, facts={**grant.facts, "organization_uuid": org.uuid})
    return await store(
        ctx,
        db,
        grant,
        account_id=account_id,
        account_type=account_type,
        name=name,
        proxy_config_id=proxy_config_id,
        setup_token=setup_token,
        placement=None,
    )


def oauth_facts(grant: TokenGrant, *, setup_token: bool, placement: Placement | None) -> dict[str, Any]:
    """`account.extra["oauth"]`: what is known about the login, never a secret."""
    facts: dict[str, Any] = {"provider": grant.flow, "scopes": list(grant.scopes), **grant.facts}
    if grant.flow == CLAUDE:
        facts["setup_token"] = setup_token
    if placement is not None:
        facts["project_id"] = placement.project_id
        facts["tier"] = placement.tier
    facts["onboarded_at"] = datetime.now(UTC).isoformat()
    return facts


def _default_name(grant: TokenGrant) -> str:
    who = grant.facts.get("email") or grant.facts.get("organization_name") or time.strftime("%Y-%m-%d %H:%M")
    return f"{_LABELS[grant.flow]} {who}"[:100]


def _apply(box: SecretBox, account: Account, grant: TokenGrant, facts: dict[str, Any]) -> None:
    try:
        kept = decrypt_credentials(box, account.credentials_encrypted)
    except (SecretBoxError, ValueError):
        kept = {}  # unreadable (the secret key changed): the new tokens replace them
    for field in TOKEN_FIELDS:
        kept.pop(field, None)
    account.credentials_encrypted = encrypt_credentials(box, {**kept, **grant.credentials()})
    account.token_expires_at = datetime.fromtimestamp(grant.expires_at, UTC) if grant.expires_at else None
    # A new dict: the JSON column notices reassignment, not changes inside it.
    account.extra = {**(account.extra or {}), "oauth": facts}
    org = facts.get("organization_uuid")
    if grant.flow == CLAUDE and isinstance(org, str):
        account.organization_id = org[:128]


async def store(
    ctx: Context,
    db: AsyncSession,
    grant: TokenGrant,
    *,
    account_id: int | None,
    account_type: str,
    name: str | None,
    proxy_config_id: int | None,
    setup_token: bool,
    placement: Placement | None,
) -> Stored:
    """Create the account, or give an existing one the new tokens (nothing else of it changes)."""
    facts = oauth_facts(grant, setup_token=setup_token, placement=placement)
    if account_id is not None:
        account = await db.get(Account, account_id)
        if account is None:
            raise NotFound("account not found")
        _apply(ctx.box, account, grant, facts)
        if account.status in CURED_STATUSES:
            account.status = "valid"
            account.status_reason = ""
        created = False
    else:
        if proxy_config_id is not None and await db.get(ProxyConfig, proxy_config_id) is None:
            raise BadRequest("proxy_config_id: proxy config not found")
        account = Account(
            name=name or _default_name(grant), type=account_type, proxy_config_id=proxy_config_id
        )
        if grant.flow == GEMINI:
            # A Google login is served through Code Assist, not the AI Studio API: that is its root.
            account.base_url = ctx.settings.gemini_code_assist_url.rstrip("/")
        _apply(ctx.box, account, grant, facts)
        db.add(account)
        created = True
    await commit_pool_change(db, ctx.state)
    return Stored(account, created)
