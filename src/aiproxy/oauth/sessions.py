"""Login sessions: what `generate-url` must remember for `exchange`, kept in the shared state.

A session lives ten minutes under `oauth:session:<id>` so that any relay instance behind the
load balancer can finish it. It holds the PKCE verifier (and, in one case, tokens), so the whole
value is encrypted with the relay's secret key, which every instance shares anyway.

Single use. `take` pops the session atomically, so two concurrent exchanges cannot both use it.
What happens next depends on why an exchange fails (the choice an admin would expect):

* it succeeds: the session is gone, and a marker says "already used" for the rest of its life;
* the state in the pasted text is not this session's: the session is burnt too (the text belongs
  to another login, or to someone else; retrying it can never be right);
* the pasted text holds no code, or the vendor refuses the code, or is unreachable: the session
  is put back for the rest of its ten minutes, so a typo or a hiccup costs a re-paste, not a
  new browser login;
* the vendor granted tokens but a later step needs the admin (a Gemini account that needs a GCP
  project id, or a Code Assist onboarding still running): the tokens are kept in the session
  (`pending`) and the next exchange with this session_id uses them instead of a code.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import orjson

from ..security.secretbox import SecretBox, SecretBoxError
from ..store.state import SharedState
from .errors import OAuthError
from .grants import TokenGrant

SESSION_TTL = 600.0


def session_key(session_id: str) -> str:
    return f"oauth:session:{session_id}"


def used_key(session_id: str) -> str:
    return f"oauth:session-used:{session_id}"


@dataclass(frozen=True, slots=True)
class OAuthSession:
    id: str
    flow: str  # claude | openai | gemini
    account_type: str  # the type a new account gets
    verifier: str
    state: str
    expires_at: float  # epoch seconds
    proxy_config_id: int | None = None
    account_id: int | None = None
    setup_token: bool = False
    project_id: str | None = None
    pending: dict[str, Any] | None = None  # a granted TokenGrant, as a dict, awaiting a later step

    def __repr__(self) -> str:  # the verifier and pending tokens never reach a log
        return f"OAuthSession(id={self.id!r}, flow={self.flow!r}, account_id={self.account_id!r})"

    @property
    def remaining(self) -> float:
        return self.expires_at - time.time()

    def with_pending(self, grant: TokenGrant) -> OAuthSession:
        data = asdict(grant)  # asdict keeps every field, repr=False or not
        data["scopes"] = list(grant.scopes)
        return replace(self, pending=data)

    def pending_grant(self) -> TokenGrant | None:
        if not self.pending:
            return None
        data = dict(self.pending)
        data["scopes"] = tuple(data.get("scopes") or ())
        return TokenGrant(**data)


async def save(state: SharedState, box: SecretBox, session: OAuthSession) -> None:
    data = orjson.dumps(asdict(session)).decode()
    await state.set(session_key(session.id), box.encrypt(data), ttl=max(1.0, session.remaining))


async def take(state: SharedState, box: SecretBox, session_id: str) -> OAuthSession:
    """The session, removed from the shared state; OAuthError when it cannot be used."""
    stored = await state.pop(session_key(session_id))
    if stored is None:
        if await state.get(used_key(session_id)) is not None:
            raise OAuthError(
                "session_id: this login session was already used; generate a new authorization URL"
            )
        raise OAuthError(
            "session_id: unknown or expired login session (sessions last 10 minutes); "
            "generate a new authorization URL"
        )
    try:
        session = OAuthSession(**orjson.loads(box.decrypt(stored)))
    except (SecretBoxError, ValueError, TypeError):
        # Written by an instance with another secret key, or by an older version.
        raise OAuthError("session_id: this login session cannot be read here; generate a new one") from None
    if session.remaining <= 0:
        raise OAuthError("session_id: the login session expired; generate a new authorization URL")
    return session


async def put_back(state: SharedState, box: SecretBox, session: OAuthSession) -> None:
    """Return a taken session for the rest of its life (a failed attempt that may be retried)."""
    if session.remaining > 1:
        data = orjson.dumps(asdict(session)).decode()
        await state.set(
            session_key(session.id), box.encrypt(data), ttl=session.remaining, only_if_absent=True
        )


async def mark_used(state: SharedState, session_id: str) -> None:
    await state.set(used_key(session_id), "1", ttl=SESSION_TTL)
