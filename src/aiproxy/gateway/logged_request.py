"""What of a proxy request its request-log row keeps: a few headers, cut and masked, and the body
only when the admin switched capture on. Credentials and every other header are never stored."""

from __future__ import annotations

import functools
from typing import Any

import orjson

from ..security.masking import mask_text

# Request headers worth keeping in the log (what the client is, which protocol options it
# asked for, its session); everything else, credentials included, is never stored.
LOGGED_HEADERS = frozenset(
    {
        b"user-agent",
        b"content-type",
        b"content-encoding",
        b"accept",
        b"anthropic-version",
        b"anthropic-beta",
        b"openai-beta",
        b"x-app",
        b"originator",
        b"x-goog-api-client",
        b"x-stainless-lang",
        b"x-stainless-package-version",
        b"x-stainless-runtime",
        b"x-stainless-os",
        b"x-session-id",
        b"session_id",
        b"session-id",
        b"thread-id",
        b"x-claude-code-session-id",
        b"x-client-request-id",
    }
)
LOGGED_HEADER_MAX = 256  # bytes kept of each logged header value


@functools.lru_cache(maxsize=4096)
def logged_value(value: bytes) -> str:
    """A header value as stored: cut, decoded, masked (cached: clients repeat the same few values)."""
    return mask_text(value[:LOGGED_HEADER_MAX].decode("latin-1"))


def logged_headers(headers: dict[bytes, bytes]) -> str:
    kept = {name.decode(): logged_value(value) for name, value in headers.items() if name in LOGGED_HEADERS}
    return orjson.dumps(kept).decode()


def captured_body(body: bytes, configs: Any) -> str:
    """The body as captured (`capture_request_body`), cut at `capture_body_max_bytes` and masked."""
    if not body or not configs.get("capture_request_body"):
        return ""
    cap = int(configs.get("capture_body_max_bytes"))
    return mask_text(body[:cap].decode("utf-8", errors="replace"))
