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


def _replace(match: re.Match[str]) -> str:
    return match.group("prefix") + MASK


def mask_text(text: str) -> str:
    """`text` with every credential-shaped token replaced by its prefix and `***`."""
    if not text:
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
_SECRET_FIELDS = re.compile(
    r"""
    (?P<name>
        (?<![A-Za-z0-9])
        [A-Za-z_\-]*?
        (?i:password|passwd|passphrase|secret|token|api[_\-]?key|authorization|cookie|credentials?)
        (?![A-Za-z0-9])
        ["']?\s*[:=]\s*
    )
    (?P<quote>["']?)
    (?P<value>(?i:bearer\s+|basic\s+)?(?!\*\*\*)[^\s"'&,;}\]]+)
    """,
    re.VERBOSE,
)


def _replace_field(match: re.Match[str]) -> str:
    return match.group("name") + match.group("quote") + MASK


def mask_secret_fields(text: str) -> str:
    """`text` with the value of every secret-named field (`password=…`, `"api_key": "…"`) replaced
    by `***`: for text the relay writes itself, such as log lines, where field names are known."""
    if not text:
        return text
    return _SECRET_FIELDS.sub(_replace_field, text)
