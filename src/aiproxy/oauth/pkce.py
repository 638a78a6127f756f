"""PKCE (RFC 7636, S256), the CSRF state, and reading the code an admin pastes back.

The admin copies whatever the vendor shows at the end of the login: a bare code, Claude's
`CODE#STATE`, or the whole callback URL the browser ended on (Codex's loopback redirect does
not load, so its address bar is what there is to copy). All three are accepted.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from .errors import OAuthError

# A code is a short opaque token; anything longer than this is not one (and is refused early).
MAX_CODE_LENGTH = 4096


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def new_verifier() -> str:
    """43 characters from the unreserved set: 32 random bytes, base64url without padding."""
    return _b64url(secrets.token_bytes(32))


def challenge_of(verifier: str) -> str:
    """S256: base64url(sha256(verifier)) without padding."""
    return _b64url(hashlib.sha256(verifier.encode()).digest())


def new_state() -> str:
    return _b64url(secrets.token_bytes(32))


def new_session_id() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class Pasted:
    code: str
    state: str | None  # None when the pasted text carried no state


def _from_query(query: str) -> Pasted:
    params = parse_qs(query, keep_blank_values=True)
    error = (params.get("error") or [""])[0]
    if error:
        # The vendor sent the browser back with an error (the user refused, the client is wrong).
        description = (params.get("error_description") or [""])[0]
        raise OAuthError(
            f"the provider refused the login: {error}" + (f": {description}" if description else "")
        )
    code = (params.get("code") or [""])[0].strip()
    state = (params.get("state") or [None])[0]
    if not code:
        raise OAuthError("code: the pasted URL carries no code")
    # Claude's callback page may still append #STATE to a code inside a URL.
    if "#" in code:
        code, _, inner = code.partition("#")
        state = state or inner or None
    return Pasted(code, state.strip() if state else None)


def parse_pasted(text: str) -> Pasted:
    """The code and state in what the admin pasted; OAuthError (a 400) when there is no code."""
    text = text.strip()
    if not text:
        raise OAuthError("code: empty")
    if len(text) > MAX_CODE_LENGTH:
        raise OAuthError("code: too long to be an authorization code")
    if "://" in text or text.startswith("?"):
        parts = urlsplit(text if "://" in text else "http://x/" + text)
        # Some vendors put the answer in the fragment instead of the query.
        query = parts.query if "code=" in parts.query or "error=" in parts.query else parts.fragment
        return _from_query(query)
    if "code=" in text:  # a bare query string: code=...&state=...
        return _from_query(text)
    code, _, state = text.partition("#")
    code = code.strip()
    if not code or any(c.isspace() for c in code):
        raise OAuthError("code: not an authorization code")
    return Pasted(code, state.strip() or None)
