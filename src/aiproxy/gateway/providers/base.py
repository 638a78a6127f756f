"""What every upstream kind provides: how a request is built for it, and how it is probed.

A provider is stateless; `providers.provider_for(account, route_family)` picks the one that
talks to an account on a given client route. The relay loop asks the provider and never
branches on the vendor itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from ..pool import PoolAccount

_FORWARD_ANY = frozenset({b"content-type", b"accept", b"user-agent"})


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    url: str
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """What the relay wants from one attempt, independent of the vendor."""

    model: str  # as the upstream knows it (after the account's mapping)
    client_headers: dict[bytes, bytes]
    query: str = ""  # the client's query string, the relay's own key removed
    gemini_action: str = "generateContent"
    gemini_version: str = "v1beta"
    count_tokens: bool = False


def vendor_root(base_url: str, *suffixes: str) -> str:
    """The vendor root without a trailing version segment the operator may have pasted."""
    for suffix in suffixes:
        if base_url.endswith(suffix):
            return base_url[: -len(suffix)]
    return base_url


class Provider:
    """One upstream kind. Subclasses set the class attributes and implement `target`."""

    wire: ClassVar[str]  # the protocol on the wire: usage parsing and cut notices follow it
    # Client headers the vendor's protocol uses; nothing else leaves the relay.
    forward: ClassVar[frozenset[bytes]] = _FORWARD_ANY
    forward_prefixes: ClassVar[tuple[bytes, ...]] = ()
    serves_responses: ClassVar[bool] = True  # whether it can answer the Responses API route

    def build(self, account: PoolAccount, request: UpstreamRequest) -> UpstreamCall:
        """URL and headers for one attempt on one account."""
        headers = self.forwarded(request.client_headers)
        headers["accept-encoding"] = "identity"  # usage is read from the answer: keep it plain
        url = self.target(account, request, headers)
        return UpstreamCall(url=url, headers=headers)

    def forwarded(self, client_headers: dict[bytes, bytes]) -> dict[str, str]:
        allowed, prefixes = self.forward, self.forward_prefixes
        return {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in client_headers.items()
            if name in allowed or (prefixes and name.startswith(prefixes))
        }

    def target(self, account: PoolAccount, request: UpstreamRequest, headers: dict[str, str]) -> str:
        """The URL; adds the account's credentials (and vendor headers) to `headers`."""
        raise NotImplementedError

    # -- the admin's "test this account" -------------------------------------------------------

    default_probe_model: ClassVar[str] = "gpt-4o-mini"

    def probe_body(self, model: str, message: str) -> bytes:
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "user", "content": message}],
            "max_tokens": 64,
        }
        return orjson.dumps(body)

    def reply_text(self, data: Any) -> str:
        """The text of a whole (non-stream) answer, or "" when it has none."""
        try:
            return str(data["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError, AttributeError):
            return ""
