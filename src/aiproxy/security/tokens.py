"""Console login tokens: HS256 JWTs valid for 24 hours.

Each token carries the user's `token_version`; changing the password bumps the version,
which invalidates every token issued before the change.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

TOKEN_TTL_SECONDS = 24 * 3600
ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
    username: str
    role: str
    version: int


class TokenError(Exception):
    """The token is missing, malformed, expired or signed with another key."""


def issue_token(secret: str, *, user_id: int, username: str, role: str, version: int) -> str:
    now = int(time.time())
    payload = {
        "sub": str(user_id),
        "username": username,
        "role": role,
        "ver": version,
        "iat": now,
        "exp": now + TOKEN_TTL_SECONDS,
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def decode_token(secret: str, token: str) -> TokenClaims:
    try:
        payload = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})
        return TokenClaims(
            user_id=int(payload["sub"]),
            username=str(payload.get("username", "")),
            role=str(payload.get("role", "user")),
            version=int(payload.get("ver", 0)),
        )
    except (jwt.PyJWTError, KeyError, ValueError) as exc:
        raise TokenError(str(exc)) from exc
