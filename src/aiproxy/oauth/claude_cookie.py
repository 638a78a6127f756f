"""Claude login without a browser: a claude.ai `sessionKey` cookie authorizes the PKCE request.

With the cookie, claude.ai's web API lists the user's organizations and grants an authorization
code for one of them, exactly what the browser's consent page would do; the code is then
exchanged like a pasted one (OAUTH.md §1.5). claude.ai sits behind Cloudflare, so the requests
look like a browser's, redirects are not followed (a redirect there is a challenge), and an HTML
page where JSON was expected is reported as the challenge it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..config import Settings
from . import clients
from .errors import OAuthError, vendor_error
from .pkce import parse_pasted
from .transport import Answer, Transport, expect_json, send

CLOUDFLARE = (
    "claude.ai answered with a Cloudflare challenge instead of the API (HTTP {status}): "
    "use a proxy config whose address claude.ai trusts, or the browser flow"
)


@dataclass(frozen=True, slots=True)
class Organization:
    uuid: str
    name: str
    capabilities: tuple[str, ...]


def cookie_header(value: str) -> str:
    """`sessionKey=<value>`; the admin may paste the value alone or the whole cookie pair."""
    value = value.strip()
    if value.lower().startswith("cookie:"):
        value = value[len("cookie:") :].strip()
    if "sessionkey=" not in value.lower():
        value = f"sessionKey={value}"
    # A session key is printable ASCII; anything else cannot be a cookie (and must not reach a header).
    if not value.isascii() or not value.isprintable():
        raise OAuthError("cookie: must be the sessionKey cookie, printable ASCII on one line")
    return value


def _browser_headers(settings: Settings, cookie: str) -> dict[str, str]:
    web = settings.oauth_claude_web_url.rstrip("/")
    return {
        "cookie": cookie,
        "user-agent": clients.BROWSER_USER_AGENT,
        "origin": web,
        "referer": f"{web}/new",
        "accept": "application/json",
        "accept-language": "en-US,en;q=0.9",
    }


def _refusal(answer: Answer, what: str) -> OAuthError | None:
    """The clear error for the answers a cookie flow typically meets, or None to carry on."""
    if answer.status in (401, 403) and not answer.is_html:
        return OAuthError(
            f"{what}: the claude.ai session key is invalid or expired (HTTP {answer.status}); "
            "copy a fresh sessionKey cookie from a logged-in browser",
            status=answer.status,
            terminal=True,
        )
    if 300 <= answer.status < 400 or (answer.is_html and answer.status < 500 and answer.status != 404):
        return OAuthError(CLOUDFLARE.format(status=answer.status), status=answer.status)
    return None


async def organizations(settings: Settings, transport: Transport, cookie: str) -> list[Organization]:
    what = "claude.ai organizations"
    url = settings.oauth_claude_web_url.rstrip("/") + "/api/organizations"
    answer = await send(transport, "GET", url, what=what, headers=_browser_headers(settings, cookie))
    refusal = _refusal(answer, what)
    if refusal is not None:
        raise refusal
    if answer.status >= 400:
        raise vendor_error(what, answer.status, answer.body, answer.text, answer.headers.get("retry-after"))
    if not isinstance(answer.body, list):
        raise OAuthError(
            f"{what}: expected a list of organizations (HTTP {answer.status})", status=answer.status
        )
    found = []
    for item in answer.body:
        if not isinstance(item, dict) or not isinstance(item.get("uuid"), str) or not item["uuid"]:
            continue
        caps = item.get("capabilities")
        caps = tuple(c for c in caps if isinstance(c, str)) if isinstance(caps, list) else ()
        name = item.get("name")
        found.append(Organization(item["uuid"], name if isinstance(name, str) else "", caps))
    return found


def chat_organization(orgs: list[Organization]) -> Organization:
    """The organization that can chat; of several, the one with most capabilities (a paid plan)."""
    chat = [o for o in orgs if "chat" in o.capabilities]
    if not chat:
        names = ", ".join(o.name or o.uuid for o in orgs) or "none"
        raise OAuthError(
            f"no organization of this claude.ai account has the chat capability (organizations: {names}); "
            "a Claude subscription is needed"
        )
    return max(chat, key=lambda o: len(o.capabilities))


async def authorize(
    settings: Settings,
    transport: Transport,
    cookie: str,
    org: Organization,
    *,
    challenge: str,
    state: str,
    scopes: tuple[str, ...],
) -> str:
    """The authorization code claude.ai grants for `org` (its state checked against ours)."""
    what = "claude.ai authorize"
    client = clients.CLAUDE_CLIENT
    url = f"{settings.oauth_claude_web_url.rstrip('/')}/v1/oauth/{quote(org.uuid, safe='')}/authorize"
    body = {
        "response_type": "code",
        "client_id": client.client_id,
        "organization_uuid": org.uuid,
        "redirect_uri": client.redirect_uri,
        "scope": " ".join(scopes),
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    headers = _browser_headers(settings, cookie)
    answer = await send(transport, "POST", url, what=what, headers=headers, json=body)
    refusal = _refusal(answer, what)
    if refusal is not None:
        raise refusal
    data: dict[str, Any] = expect_json(answer, what)
    redirect = data.get("redirect_uri")
    if isinstance(redirect, str) and redirect:
        pasted = parse_pasted(redirect)
    elif isinstance(data.get("code"), str) and data["code"]:
        pasted = parse_pasted(data["code"])
    else:
        raise OAuthError(f"{what}: the answer carries no authorization code")
    if pasted.state is not None and pasted.state != state:
        raise OAuthError(f"{what}: the answer's state does not match the request's")
    return pasted.code
