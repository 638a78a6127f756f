"""Fake OAuth providers: Claude (browser and claude.ai cookie flows), OpenAI (Codex) and Google
(Gemini CLI), plus the Code Assist project endpoints, all on the mock's one port.

Each vendor has a path prefix standing in for its host, so a test points the relay's settings at
``<mock>/claude/oauth/authorize``, ``<mock>/openai/oauth/token``, ``<mock>/google/token`` and so
on; Code Assist keeps its real paths (``/v1internal:loadCodeAssist``) under the mock's root.

It behaves like the real servers where a relay can get it wrong: authorize answers 302 to the
redirect URI; codes are single-use and bound to the PKCE challenge, client id and redirect URI;
token bodies must be JSON (Claude) or a form (OpenAI, Google with its client secret); refresh
tokens rotate and a retired one is refused in each vendor's words. Knobs under
``/__mock/oauth/*`` (and on ``OAuthMock``) set lifetimes, queue failures, revoke tokens and
choose how Code Assist answers.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from aiohttp import web

from ..oauth import clients

VENDORS = ("claude", "openai", "google")
CLIENT_OF = {
    "claude": clients.CLAUDE_CLIENT,
    "openai": clients.OPENAI_CLIENT,
    "google": clients.GEMINI_CLIENT,
}
DEFAULT_EXPIRES_IN = {"claude": 28_800, "openai": 864_000, "google": 3_599}
CODE_ASSIST_MODES = ("assigned", "onboard", "user-project")

# Who logs in: fixed identities, so tests can check what the relay stored.
CLAUDE_EMAIL = "claude-user@example.com"
CLAUDE_ACCOUNT_UUID = "5d1f0a52-7c1e-4c39-9a53-0000000c1a0d"
CHAT_ORG = {
    "uuid": "8e0b6c1d-3f0a-4f5e-9b1d-00000000c4a7",
    "name": "Mock Max Org",
    "capabilities": ["chat", "claude_max"],
}
API_ORG = {"uuid": "1a2b3c4d-0000-4000-8000-0000000000a1", "name": "Mock API Org", "capabilities": ["api"]}
OPENAI_EMAIL = "codex-user@example.com"
CHATGPT_ACCOUNT_ID = "c0dex000-1111-4222-8333-444455556666"
CHATGPT_USER_ID = "user-MockCodexUser0001"
CHATGPT_PLAN = "pro"
GOOGLE_EMAIL = "gemini-user@example.com"
ASSIGNED_PROJECT = "mock-assigned-project"
FREE_PROJECT = "mock-free-tier-project"

# What a vendor API (the mock's catch-all routes) says to a revoked or expired OAuth token.
REFUSALS = {
    "anthropic": "OAuth token has expired. Please obtain a new token or refresh your existing token.",
    "openai": "Provided authentication token is expired. Please try signing in again.",
    "gemini": "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential.",
}


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned_jwt(claims: dict[str, Any]) -> str:
    """A JWT-shaped token; the signature is filler (the relay reads claims without verifying)."""
    header = _b64url(orjson.dumps({"alg": "RS256", "typ": "JWT", "kid": "mock"}))
    return f"{header}.{_b64url(orjson.dumps(claims))}.{_b64url(b'mock-signature')}"


@dataclass(slots=True)
class Code:
    vendor: str
    client_id: str
    redirect_uri: str
    challenge: str
    state: str
    scope: str
    org: dict[str, Any]


@dataclass(slots=True)
class Issued:
    vendor: str
    access_token: str
    refresh_token: str | None
    grant_type: str
    scope: str
    expires_at: float
    revoked: bool = False
    retired: bool = False  # the refresh token was used: it must not work again
    org: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Failure:
    status: int
    count: int = 1
    body: Any = None
    retry_after: float | None = None
    vendor: str | None = None
    grant_type: str | None = None


class OAuthMock:
    """State of the fake providers; the ``/__mock/oauth/*`` routes are thin wrappers around it."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.codes: dict[str, Code] = {}
        self.issued: list[Issued] = []
        self.by_access: dict[str, Issued] = {}
        self.by_refresh: dict[str, Issued] = {}
        self.hits: Counter[tuple[str, str]] = Counter()
        self.calls: list[dict[str, Any]] = []
        self.expires_in = dict(DEFAULT_EXPIRES_IN)
        self.failures: list[Failure] = []
        self.code_assist_mode = "assigned"
        self.pending_polls = 1  # onboardUser answers not-done this many times (mode "onboard")
        self.polls: Counter[str] = Counter()

    # ------------------------------------------------------------------ knobs
    def configure(self, data: dict[str, Any]) -> None:
        """Apply ``/__mock/oauth/config``: expires_in, fail, code_assist (see docs/oauth-accounts.md)."""
        expires = data.get("expires_in")
        if isinstance(expires, dict):
            for vendor, seconds in expires.items():
                if vendor not in VENDORS:
                    raise ValueError(f"expires_in: unknown vendor {vendor!r}")
                self.expires_in[vendor] = int(seconds)
        elif expires is not None:
            self.expires_in = dict.fromkeys(VENDORS, int(expires))
        fail = data.get("fail")
        for item in fail if isinstance(fail, list) else [fail] if fail else []:
            self.fail_next(**item)
        assist = data.get("code_assist")
        if isinstance(assist, str):
            assist = {"mode": assist}
        if assist:
            if assist.get("mode", self.code_assist_mode) not in CODE_ASSIST_MODES:
                raise ValueError(f"code_assist: mode must be one of {', '.join(CODE_ASSIST_MODES)}")
            self.code_assist_mode = assist.get("mode", self.code_assist_mode)
            self.pending_polls = int(assist.get("pending_polls", self.pending_polls))

    def fail_next(
        self,
        status: int,
        *,
        count: int = 1,
        body: Any = None,
        retry_after: float | None = None,
        vendor: str | None = None,
        grant_type: str | None = None,
    ) -> None:
        """The next `count` token calls (of `vendor`, of `grant_type`, when given) answer `status`."""
        if vendor is not None and vendor not in VENDORS:
            raise ValueError(f"vendor must be one of {', '.join(VENDORS)}")
        self.failures.append(Failure(int(status), int(count), body, retry_after, vendor, grant_type))

    def revoke(self, access_token: str) -> bool:
        issued = self.by_access.get(access_token)
        if issued is not None:
            issued.revoked = True
        return issued is not None

    def refusal(self, access_token: str) -> bool:
        """True when a token this mock issued may no longer be used (revoked or expired)."""
        issued = self.by_access.get(access_token)
        return issued is not None and (issued.revoked or issued.expires_at <= time.time())

    def stats(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {vendor: {} for vendor in VENDORS}
        for (vendor, what), hits in sorted(self.hits.items()):
            out[vendor][what] = hits
        return out

    def tokens(self) -> list[dict[str, Any]]:
        return [asdict(issued) for issued in self.issued]

    def config(self) -> dict[str, Any]:
        return {
            "expires_in": self.expires_in,
            "fail": [asdict(f) for f in self.failures],
            "code_assist": {"mode": self.code_assist_mode, "pending_polls": self.pending_polls},
        }

    # ------------------------------------------------------------------ issuing
    def new_code(self, vendor: str, params: dict[str, str], org: dict[str, Any]) -> str:
        code = f"mock-{vendor}-code-{secrets.token_urlsafe(18)}"
        self.codes[code] = Code(
            vendor,
            params.get("client_id", ""),
            params.get("redirect_uri", ""),
            params.get("code_challenge", ""),
            params.get("state", ""),
            params.get("scope", ""),
            org,
        )
        return code

    def issue(
        self, vendor: str, grant_type: str, scope: str, *, lifetime: int | None = None, org: dict[str, Any]
    ) -> Issued:
        seconds = lifetime if lifetime is not None else self.expires_in[vendor]
        expires_at = time.time() + seconds
        setup = lifetime is not None  # Claude setup tokens: long-lived, no refresh token
        if vendor == "claude":
            access = f"sk-ant-oat01-{secrets.token_urlsafe(32)}"
            refresh = None if setup else f"sk-ant-ort01-{secrets.token_urlsafe(32)}"
        elif vendor == "openai":
            access = unsigned_jwt({"exp": int(expires_at), "jti": secrets.token_hex(8), **_openai_auth()})
            refresh = f"rt_{secrets.token_urlsafe(32)}"
        else:
            access = f"ya29.{secrets.token_urlsafe(40)}"
            refresh = f"1//0{secrets.token_urlsafe(32)}"
        issued = Issued(vendor, access, refresh, grant_type, scope, expires_at, org=org)
        self.issued.append(issued)
        self.by_access[access] = issued
        if refresh:
            self.by_refresh[refresh] = issued
        return issued

    def take_failure(self, vendor: str, grant_type: str) -> Failure | None:
        for failure in self.failures:
            if failure.vendor in (None, vendor) and failure.grant_type in (None, grant_type):
                failure.count -= 1
                if failure.count <= 0:
                    self.failures.remove(failure)
                return failure
        return None


OAUTH = web.AppKey("mock_oauth", OAuthMock)


def _openai_auth() -> dict[str, Any]:
    return {
        "https://api.openai.com/auth": {
            "chatgpt_account_id": CHATGPT_ACCOUNT_ID,
            "chatgpt_plan_type": CHATGPT_PLAN,
            "chatgpt_user_id": CHATGPT_USER_ID,
            "organizations": [{"id": "org-mock", "is_default": True, "role": "owner", "title": "Personal"}],
        }
    }


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def _oauth_error(vendor: str, status: int, error: str, description: str) -> web.Response:
    # OpenAI nests its refresh errors; every vendor answers plain RFC 6749 errors otherwise.
    if vendor == "openai" and error.startswith("refresh_token_"):
        return _json(
            {"error": {"code": error, "message": description, "type": "invalid_request_error"}}, status
        )
    return _json({"error": error, "error_description": description}, status)


def _record(request: web.Request, vendor: str, endpoint: str, body: Any) -> None:
    mock = request.app[OAUTH]
    mock.hits[(vendor, endpoint)] += 1
    mock.calls.append(
        {
            "vendor": vendor,
            "endpoint": endpoint,
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body,
            "time": time.time(),
        }
    )


# ---------------------------------------------------------------------- authorize (browser)
def _authorize(vendor: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        params = dict(request.query)
        _record(request, vendor, "authorize", None)
        client = CLIENT_OF[vendor]
        problem = _check_authorize(params, client)
        if problem:
            return _json({"error": "invalid_request", "error_description": problem}, 400)
        code = request.app[OAUTH].new_code(vendor, params, CHAT_ORG)
        query = urlencode({"code": code, "state": params["state"]})
        raise web.HTTPFound(f"{params['redirect_uri']}?{query}")

    return handler


def _check_authorize(params: dict[str, str], client: clients.Client) -> str:
    if params.get("client_id") != client.client_id:
        return "unknown client_id"
    if params.get("redirect_uri") != client.redirect_uri:
        return "redirect_uri is not registered for this client"
    if params.get("response_type") != "code":
        return "response_type must be code"
    if params.get("code_challenge_method") != "S256" or len(params.get("code_challenge", "")) != 43:
        return "PKCE with S256 is required"
    if not params.get("state"):
        return "state is required"
    return ""


# ---------------------------------------------------------------------- token endpoints
async def _read_body(request: web.Request, vendor: str) -> dict[str, Any] | None:
    raw = await request.read()
    kind = request.headers.get("content-type", "")
    if vendor == "claude":
        if not kind.startswith("application/json"):
            return None
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return body if isinstance(body, dict) else None
    if not kind.startswith("application/x-www-form-urlencoded"):
        return None
    return dict(parse_qsl(raw.decode(), keep_blank_values=True))


def _s256(verifier: str) -> str:
    return _b64url(hashlib.sha256(verifier.encode()).digest())


def _token(vendor: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        mock = request.app[OAUTH]
        body = await _read_body(request, vendor)
        grant_type = str((body or {}).get("grant_type", ""))
        _record(request, vendor, grant_type or "token", body)
        if body is None:
            wanted = "a JSON body" if vendor == "claude" else "a form-encoded body"
            return _oauth_error(vendor, 400, "invalid_request", f"the token endpoint expects {wanted}")
        failure = mock.take_failure(vendor, grant_type)
        if failure is not None:
            headers = {"Retry-After": f"{failure.retry_after:g}"} if failure.retry_after is not None else {}
            payload = failure.body if failure.body is not None else _failure_body(failure.status)
            return _json(payload, failure.status, headers)
        client = CLIENT_OF[vendor]
        if body.get("client_id") != client.client_id:
            return _oauth_error(vendor, 401, "invalid_client", "unknown client_id")
        if vendor == "google" and body.get("client_secret") != client.client_secret:
            return _oauth_error(vendor, 401, "invalid_client", "Unauthorized")
        if grant_type == "authorization_code":
            return _code_grant(mock, vendor, body)
        if grant_type == "refresh_token":
            return _refresh_grant(mock, vendor, body)
        return _oauth_error(vendor, 400, "unsupported_grant_type", f"grant_type {grant_type!r}")

    return handler


def _failure_body(status: int) -> dict[str, Any]:
    if status == 429:
        return {"error": "rate_limit_exceeded", "error_description": "Too many token requests"}
    if status >= 500:
        return {"error": "server_error", "error_description": "The token service is unavailable"}
    return {"error": "invalid_grant", "error_description": "The grant was refused by the mock"}


def _code_grant(mock: OAuthMock, vendor: str, body: dict[str, Any]) -> web.Response:
    code = mock.codes.pop(str(body.get("code", "")), None)  # single use, even when refused below
    if code is None or code.vendor != vendor:
        return _oauth_error(vendor, 400, "invalid_grant", "Invalid or already used authorization code")
    if body.get("redirect_uri") != code.redirect_uri:
        return _oauth_error(vendor, 400, "invalid_grant", "redirect_uri does not match the authorize request")
    if _s256(str(body.get("code_verifier", ""))) != code.challenge:
        return _oauth_error(vendor, 400, "invalid_grant", "code_verifier does not match the code_challenge")
    if vendor == "claude" and body.get("state") != code.state:
        return _oauth_error(vendor, 400, "invalid_grant", "state does not match the authorize request")
    lifetime = body.get("expires_in") if vendor == "claude" else None
    if lifetime is not None and not isinstance(lifetime, int):
        return _oauth_error(vendor, 400, "invalid_request", "expires_in must be an integer")
    issued = mock.issue(vendor, "authorization_code", code.scope, lifetime=lifetime, org=code.org)
    return _json(_token_answer(issued))


def _refresh_grant(mock: OAuthMock, vendor: str, body: dict[str, Any]) -> web.Response:
    old = mock.by_refresh.get(str(body.get("refresh_token", "")))
    if old is None or old.vendor != vendor:
        return _oauth_error(vendor, 400, "invalid_grant", "Refresh token not found or invalid")
    if old.retired:
        if vendor == "openai":
            return _oauth_error(
                vendor,
                401,
                "refresh_token_reused",
                "Your refresh token has already been used to generate a new access token. "
                "Please try signing in again.",
            )
        text = (
            "Refresh token not found or invalid"
            if vendor == "claude"
            else "Token has been expired or revoked."
        )
        return _oauth_error(vendor, 400, "invalid_grant", text)
    old.retired = True  # rotation: every refresh retires the token it used
    issued = mock.issue(vendor, "refresh_token", old.scope, org=old.org)
    return _json(_token_answer(issued))


def _token_answer(issued: Issued) -> dict[str, Any]:
    expires_in = max(0, int(issued.expires_at - time.time() + 0.5))
    answer: dict[str, Any] = {
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
    }
    if issued.refresh_token:
        answer["refresh_token"] = issued.refresh_token
    if issued.vendor == "claude":
        org = issued.org or CHAT_ORG
        answer["scope"] = issued.scope
        answer["organization"] = {"uuid": org["uuid"], "name": org["name"]}
        answer["account"] = {"uuid": CLAUDE_ACCOUNT_UUID, "email_address": CLAUDE_EMAIL}
    elif issued.vendor == "openai":
        now = int(time.time())
        claims = {"iss": "https://auth.openai.com", "aud": [clients.OPENAI_CLIENT.client_id], "iat": now}
        claims |= {"exp": now + 3600, "email": OPENAI_EMAIL, "email_verified": True, **_openai_auth()}
        answer["id_token"] = unsigned_jwt(claims)
    else:
        answer["scope"] = issued.scope
        claims = {"iss": "https://accounts.google.com", "aud": clients.GEMINI_CLIENT.client_id}
        claims |= {"sub": "100000000000000000001", "email": GOOGLE_EMAIL, "email_verified": True}
        answer["id_token"] = unsigned_jwt(claims)
    return answer


# ---------------------------------------------------------------------- claude.ai cookie flow
def _cookie_refusal(request: web.Request) -> web.Response | None:
    pairs = (part.partition("=") for part in request.headers.get("cookie", "").split(";"))
    key = next((value.strip() for name, _, value in pairs if name.strip() == "sessionKey"), "")
    if not key or "expired" in key:
        error = {"type": "permission_error", "message": "Invalid authorization"}
        return _json({"type": "error", "error": error}, 401)
    if "cloudflare" in key:
        return web.Response(status=302, headers={"Location": "/cdn-cgi/challenge-platform/h/b/orchestrate"})
    if "challenge" in key:
        page = "<!DOCTYPE html><html><head><title>Just a moment...</title></head><body></body></html>"
        return web.Response(status=403, text=page, content_type="text/html")
    return None


async def _organizations(request: web.Request) -> web.Response:
    _record(request, "claude", "organizations", None)
    refused = _cookie_refusal(request)
    if refused is not None:
        return refused
    orgs = [API_ORG] if "nochat" in request.headers.get("cookie", "") else [API_ORG, CHAT_ORG]
    return _json(orgs)


async def _cookie_authorize(request: web.Request) -> web.Response:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        body = None
    _record(request, "claude", "cookie_authorize", body)
    refused = _cookie_refusal(request)
    if refused is not None:
        return refused
    if not isinstance(body, dict):
        return _json(
            {"type": "error", "error": {"type": "invalid_request_error", "message": "JSON body"}}, 400
        )
    org_uuid = request.match_info["org"]
    params = {k: str(v) for k, v in body.items()}
    problem = _check_authorize(params, clients.CLAUDE_CLIENT)
    if not problem and body.get("organization_uuid") != org_uuid:
        problem = "organization_uuid does not match the path"
    if not problem and org_uuid != CHAT_ORG["uuid"]:
        problem = "this organization cannot use Claude Code"
    if not problem and "org:create_api_key" in str(body.get("scope", "")).split():
        problem = "scope org:create_api_key is only granted to a browser login"
    if problem:
        return _json({"type": "error", "error": {"type": "invalid_request_error", "message": problem}}, 400)
    code = request.app[OAUTH].new_code("claude", params, CHAT_ORG)
    query = urlencode({"code": code, "state": params["state"]})
    return _json({"redirect_uri": f"{params['redirect_uri']}?{query}"})


# ---------------------------------------------------------------------- Code Assist
def _google_error(status: int, grpc: str, message: str) -> web.Response:
    return _json({"error": {"code": status, "message": message, "status": grpc}}, status)


async def _code_assist_call(request: web.Request, method: str) -> tuple[dict[str, Any], str] | web.Response:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        body = None
    _record(request, "google", method, body)
    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    mock = request.app[OAUTH]
    issued = mock.by_access.get(token)
    if issued is None or issued.vendor != "google" or mock.refusal(token):
        return _google_error(401, "UNAUTHENTICATED", REFUSALS["gemini"])
    if not isinstance(body, dict):
        return _google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
    return body, token


async def _load_code_assist(request: web.Request) -> web.Response:
    checked = await _code_assist_call(request, "loadCodeAssist")
    if isinstance(checked, web.Response):
        return checked
    body, _ = checked
    mode = request.app[OAUTH].code_assist_mode
    standard = {
        "id": "standard-tier",
        "name": "Gemini Code Assist",
        "userDefinedCloudaicompanionProject": True,
    }
    free = {
        "id": "free-tier",
        "name": "Gemini Code Assist for individuals",
        "userDefinedCloudaicompanionProject": False,
    }
    if mode == "assigned":
        project = body.get("cloudaicompanionProject") or ASSIGNED_PROJECT
        return _json(
            {"currentTier": standard, "allowedTiers": [standard], "cloudaicompanionProject": project}
        )
    if mode == "onboard":
        return _json({"allowedTiers": [{**free, "isDefault": True}, standard]})
    return _json({"allowedTiers": [{**standard, "isDefault": True}]})


async def _onboard_user(request: web.Request) -> web.Response:
    checked = await _code_assist_call(request, "onboardUser")
    if isinstance(checked, web.Response):
        return checked
    body, token = checked
    mock = request.app[OAUTH]
    if not isinstance(body.get("tierId"), str):
        return _google_error(400, "INVALID_ARGUMENT", "tierId is required")
    given = body.get("cloudaicompanionProject")
    if mock.code_assist_mode == "user-project" and not given:
        return _google_error(400, "INVALID_ARGUMENT", "This tier requires a Google Cloud project")
    mock.polls[token] += 1
    if mock.code_assist_mode == "onboard" and mock.polls[token] <= mock.pending_polls:
        return _json({"name": f"operations/mock-onboard-{mock.polls[token]}", "done": False})
    project = given or (FREE_PROJECT if mock.code_assist_mode == "onboard" else ASSIGNED_PROJECT)
    response = {
        "@type": "type.googleapis.com/google.internal.cloud.code.v1internal.OnboardUserResponse",
        "cloudaicompanionProject": {"id": project, "name": project},
    }
    return _json({"name": "operations/mock-onboard-done", "done": True, "response": response})


# ---------------------------------------------------------------------- admin knobs
async def _stats(request: web.Request) -> web.Response:
    return _json(request.app[OAUTH].stats())


async def _config(request: web.Request) -> web.Response:
    mock = request.app[OAUTH]
    if request.method == "POST":
        try:
            data = orjson.loads(await request.read() or b"{}")
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            mock.configure(data)
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            return _json({"ok": False, "error": str(exc)}, 400)
    return _json(mock.config())


async def _revoke(request: web.Request) -> web.Response:
    try:
        data = orjson.loads(await request.read())
        token = data["access_token"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return _json({"ok": False, "error": 'expected {"access_token": "..."}'}, 400)
    return _json({"ok": True, "revoked": request.app[OAUTH].revoke(str(token))})


async def _tokens(request: web.Request) -> web.Response:
    return _json(request.app[OAUTH].tokens())


async def _calls(request: web.Request) -> web.Response:
    return _json(request.app[OAUTH].calls)


async def _reset(request: web.Request) -> web.Response:
    request.app[OAUTH].reset()
    return _json({"ok": True})


def add_routes(app: web.Application) -> None:
    """Register the fake providers on `app` (before the mock's catch-all route)."""
    app[OAUTH] = OAuthMock()
    router = app.router
    for vendor, authorize, token in (
        ("claude", "/claude/oauth/authorize", "/claude/v1/oauth/token"),
        ("openai", "/openai/oauth/authorize", "/openai/oauth/token"),
        ("google", "/google/o/oauth2/v2/auth", "/google/token"),
    ):
        router.add_get(authorize, _authorize(vendor))
        router.add_post(token, _token(vendor))
    router.add_get("/claude/api/organizations", _organizations)
    router.add_post("/claude/v1/oauth/{org}/authorize", _cookie_authorize)
    router.add_post("/v1internal:loadCodeAssist", _load_code_assist)
    router.add_post("/v1internal:onboardUser", _onboard_user)
    router.add_get("/__mock/oauth/stats", _stats)
    router.add_get("/__mock/oauth/config", _config)
    router.add_post("/__mock/oauth/config", _config)
    router.add_post("/__mock/oauth/revoke", _revoke)
    router.add_get("/__mock/oauth/tokens", _tokens)
    router.add_get("/__mock/oauth/calls", _calls)
    router.add_post("/__mock/oauth/reset", _reset)


def refusal_message(app: web.Application, vendor: str, key: str | None) -> str | None:
    """For the catch-all vendor routes: the 401 message when `key` is a revoked or expired token."""
    if key is None or OAUTH not in app or not app[OAUTH].refusal(key):
        return None
    return REFUSALS.get(vendor, REFUSALS["anthropic"])
