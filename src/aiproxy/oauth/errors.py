"""One error for everything that can go wrong talking OAuth to a vendor, and how it is classified.

The onboarding routes answer any `OAuthError` with a 400 carrying its message; the token refresher
reads `terminal` (the grant is dead: the account must be logged in again) and `retry_after`.
Messages never contain a secret: vendor texts pass through `mask_text` before they get here.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

from ..security.masking import mask_text

# Error codes after which the refresh token will never work again (OAUTH.md §4): Anthropic and
# Google say invalid_grant; OpenAI says refresh_token_reused when another client rotated it first,
# and Codex also knows the expired/invalidated variants.
TERMINAL_CODES = frozenset(
    {"invalid_grant", "refresh_token_reused", "refresh_token_expired", "refresh_token_invalidated"}
)
MAX_MESSAGE = 500


class OAuthError(Exception):
    """A failed OAuth step.

    `status` is the vendor's HTTP status (0: no answer at all). `terminal`: retrying cannot help,
    a person must log in again. `retry_after`: seconds the vendor asked us to wait (429/503).
    `code` is the vendor's machine-readable error code when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        terminal: bool = False,
        retry_after: float | None = None,
        status: int = 0,
        code: str = "",
    ) -> None:
        self.message = mask_text(message)[:MAX_MESSAGE]
        self.terminal = terminal
        self.retry_after = retry_after
        self.status = status
        self.code = code
        super().__init__(self.message)


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def error_details(body: Any) -> tuple[str, str]:
    """(code, message) from a vendor's error body, whichever of the usual shapes it has.

    OAuth servers answer `{"error": "invalid_grant", "error_description": "..."}` (RFC 6749);
    OpenAI nests `{"error": {"code", "message"}}`, Anthropic's API `{"error": {"type", "message"}}`,
    Google's APIs `{"error": {"status", "message"}}`.
    """
    if not isinstance(body, dict):
        return "", ""
    error = body.get("error")
    if isinstance(error, dict):
        code = _text(error.get("code")) or _text(error.get("type")) or _text(error.get("status"))
        return code, _text(error.get("message")) or _text(error.get("error_description"))
    code = _text(error)
    message = _text(body.get("error_description")) or _text(body.get("message")) or _text(body.get("detail"))
    return code, message


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if seconds == seconds else None  # NaN is not a delay


def vendor_error(what: str, status: int, body: Any, text: str, retry_after: str | None) -> OAuthError:
    """The error for a non-2xx answer: the vendor's own words, and whether retrying can help."""
    code, message = error_details(body)
    if not message and not code:
        message = _snippet(text)
    detail = ": ".join(part for part in (code, message) if part) or "no error message"
    terminal = code in TERMINAL_CODES and status < 500
    return OAuthError(
        f"{what}: HTTP {status}: {detail}",
        terminal=terminal,
        retry_after=parse_retry_after(retry_after) if status == 429 or status >= 500 else None,
        status=status,
        code=code,
    )


def _snippet(text: str) -> str:
    """A short, single-line piece of a non-JSON answer; HTML pages are only named."""
    stripped = text.strip()
    if stripped[:1] == "<":
        return "the answer was an HTML page, not JSON"
    return " ".join(stripped.split())[:200]
