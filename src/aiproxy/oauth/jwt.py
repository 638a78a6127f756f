"""Reading a JWT's claims without verifying it.

The id_tokens read here come straight from the vendor's token endpoint over TLS, in answer to
our own request, so the transport vouches for them; their claims only label the account (email,
ChatGPT account id, plan). Nothing here authorises anything, so no signature check is needed.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson


def unverified_claims(token: str | None) -> dict[str, Any]:
    """The payload of `header.payload.signature`; {} for anything that is not a JWT."""
    if not token or token.count(".") != 2:
        return {}
    payload = token.split(".")[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = orjson.loads(raw)
    except (binascii.Error, ValueError):  # orjson.JSONDecodeError is a ValueError
        return {}
    return claims if isinstance(claims, dict) else {}
