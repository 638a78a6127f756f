"""Masking credentials in free text: anything the relay stores or shows that it did not write itself.

Upstream error bodies sometimes echo the credential they refused, clients put keys in odd
headers, and captured request bodies carry whatever the client sent. Before such text is
stored (request logs, account status reasons) or returned to a user, every known secret
shape in it is replaced, keeping a short prefix so an operator can still tell which kind
of credential it was.
"""

from __future__ import annotations

import re

MASK = "***"

# Ordered: the specific shapes first, so `sk-ant-…` keeps its longer prefix.
_SHAPES = re.compile(
    r"""
    (?<![A-Za-z0-9_\-])                 # a token of its own, not the tail of a word
    (?P<prefix>
        sk-ant-[a-z]{2,4}\d{0,3}-        # Anthropic API keys and OAuth tokens
      | sk-(?:proj|svcacct|admin)-       # OpenAI project/service keys
      | sk-                              # OpenAI keys and this relay's own keys
      | AIza                             # Google API keys
      | ya29\.                           # Google OAuth access tokens
      | (?:AKIA|ASIA)                    # AWS access key ids
      | (?i:bearer)\s+                   # bearer tokens, whatever they are
      | eyJ                              # JWTs (header.payload.signature)
      | (?i:aws_secret_access_key|secret_access_key|sessionKey|session_key)["']?\s*[:=]\s*["']?
    )
    (?P<secret>[A-Za-z0-9_\-+/=.~]{12,})
    """,
    re.VERBOSE,
)


# Lower-cased substrings at least one of which every match of _SHAPES contains (keep the two in
# step): most text has none, and a few `in` tests cost a tenth of the regex scan.
_SHAPE_HINTS = ("sk-", "aiza", "ya29.", "akia", "asia", "bearer", "eyj", "secret_access_key", "session")


def _replace(match: re.Match[str]) -> str:
    return match.group("prefix") + MASK


def mask_text(text: str) -> str:
    """`text` with every credential-shaped token replaced by its prefix and `***`."""
    if not text:
        return text
    lowered = text.lower()
    if not any(hint in lowered for hint in _SHAPE_HINTS):
        return text
    return _SHAPES.sub(_replace, text)


def mask_bytes(raw: bytes) -> bytes:
    """The same for a body on its way to a client (decoded leniently, re-encoded as UTF-8)."""
    if not raw:
        return raw
    text = raw.decode("utf-8", "replace")
    masked = mask_text(text)
    return raw if masked == text else masked.encode()


# `name=value`, `name: value` and `"name": "value"` where the name says the value is a secret.
# Log messages are free text written by this code: a password or token can reach one as a field of
# a dict or a query string, where no credential shape gives it away (a password has none).
_SECRET_FIELDS_PATTERN = r"""
    (?P<name>                           # the end of the name (`access_token`, `x-api-key`) and `=`
        (?:password|passwd|passphrase|secret|token|api[_\-]?key|authorization|cookie|credentials?)
        (?![a-z0-9])
        ["']?\s*[:=]\s*
    )
    ["']?
    (?P<value>(?:bearer\s+|basic\s+)?(?!\*\*\*)[^\s"'&,;}\]]+)
"""
# Matched against the lower-cased text when it is ASCII (same offsets; a case-insensitive scan
# costs ten times more), else case-insensitively against the text itself.
_SECRET_FIELDS_LOWER = re.compile(_SECRET_FIELDS_PATTERN, re.VERBOSE)
_SECRET_FIELDS_ANY_CASE = re.compile(_SECRET_FIELDS_PATTERN, re.VERBOSE | re.IGNORECASE)
# As _SHAPE_HINTS, for the field names.
_FIELD_HINTS = ("pass", "secret", "token", "key", "auth", "cookie", "credential")


def mask_secret_fields(text: str) -> str:
    """`text` with the value of every secret-named field (`password=…`, `"api_key": "…"`) replaced
    by `***`: for text the relay writes itself, such as log lines, where field names are known."""
    if not text:
        return text
    lowered = text.lower()
    if not any(hint in lowered for hint in _FIELD_HINTS):
        return text
    matches = (
        _SECRET_FIELDS_LOWER.finditer(lowered) if text.isascii() else _SECRET_FIELDS_ANY_CASE.finditer(text)
    )
    pieces: list[str] = []
    end = 0
    for match in matches:
        pieces += (text[end : match.start("value")], MASK)
        end = match.end("value")
    if not pieces:
        return text
    pieces.append(text[end:])
    return "".join(pieces)
