"""What every upstream kind provides: how a request is built for it and its answer read.

A provider is stateless; `providers.provider_for(account, route_family)` picks the one that
talks to an account on a given client route. The relay loop asks the provider and never
branches on the vendor itself. A provider owns:

- the URL, credentials and forwarded headers of a call (`build`), and the body (`encode`);
- how its answer becomes the wire it names (`wire`): most answer in it already, others
  decode a whole answer (`decode_answer`) or a stream (`stream_decoder`) into it, and
  usage is then read from that wire (`usage.py`);
- its rate-limit signals: a 200 that is really a refusal (`rejected`), when a limited
  account may be used again (`resets_at`);
- its probe request for the admin's "test this account".
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Protocol

import orjson
from yarl import URL

from ..pool import PoolAccount

_FORWARD_ANY = frozenset({b"content-type", b"accept", b"user-agent"})


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    # A string, or a yarl URL built already encoded when the exact bytes matter (a signed path).
    url: str | URL
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
    stream: bool = False  # the client asked for a stream
    usage_requested: bool = False  # a streaming OpenAI client asked for the usage chunk itself
    # A Responses API sub-path after `/responses`: "/compact", "/input_tokens", "/<id>", "/<id>/cancel"…
    subpath: str = ""
    # Runtime configs (`RuntimeConfigs.get`): the identity values subscription upstreams expect.
    configs: Any = None


class ChunkFilter(Protocol):
    """Rewrites a stream chunk by chunk; `finish` flushes what a cut or ended stream left.

    Never raises on bad input: it stops emitting, and the usage tap then sees an unfinished
    stream (billed for what was seen, flagged truncated).
    """

    def feed(self, chunk: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


def retry_after(headers: dict[str, str], now: float) -> float | None:
    """The epoch a `Retry-After` header (seconds or an HTTP date) points at."""
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.replace(".", "", 1).isdigit():
        return now + float(value)
    with contextlib.suppress(TypeError, ValueError):
        return parsedate_to_datetime(value).timestamp()
    return None


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

    def build(self, account: PoolAccount, request: UpstreamRequest, body: bytes = b"") -> UpstreamCall:
        """URL and headers for one attempt on one account (`body`: what `encode` made, for signing)."""
        headers = self.forwarded(request.client_headers)
        headers["accept-encoding"] = "identity"  # usage is read from the answer: keep it plain
        url = self.target(account, request, headers)
        return UpstreamCall(url=url, headers=headers)

    def encode(
        self, account: PoolAccount, request: UpstreamRequest, payload: dict[str, Any], raw: bytes | None
    ) -> bytes:
        """The body sent upstream: the client's exact bytes (`raw`) unless something must change."""
        changes = self.body_changes(account, request, payload)
        if raw is not None and not changes:
            return raw
        return orjson.dumps({**payload, **changes} if changes else payload)

    def body_changes(
        self, account: PoolAccount, request: UpstreamRequest, payload: dict[str, Any]
    ) -> dict[str, Any]:
        """Top-level fields to set in the client's body; by default only the mapped model."""
        return {"model": request.model} if payload.get("model") != request.model else {}

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

    def unsupported(self, account: PoolAccount, request: UpstreamRequest) -> str | None:
        """Why this account's upstream has no such call (the client gets a 400), or None."""
        return None

    # -- reading the answer --------------------------------------------------------------------

    def decode_answer(self, request: UpstreamRequest, body: bytes) -> bytes:
        """A whole answer in this provider's `wire` (raise ValueError when it cannot be read)."""
        return body

    def stream_decoder(self, request: UpstreamRequest) -> ChunkFilter | None:
        """Turns the upstream's stream into SSE of `wire`; None when it already is."""
        return None

    def stream_filter(self, request: UpstreamRequest) -> ChunkFilter | None:
        """Rewrites the (decoded) stream on its way to the client, after usage was read."""
        return None

    def error_in_wire(self, status: int, headers: dict[str, str], body: bytes) -> bytes:
        """An upstream error body in the shape of `wire` (what the client's SDK can read)."""
        return body

    def quota(self, status: int, headers: dict[str, str], error: bytes | None) -> dict[str, Any] | None:
        """The plan/quota windows the answer reports (see gateway/quotas.py); None = nothing said.

        `error` is the body of an error answer (None for a success)."""
        return None

    def rejected(self, headers: dict[str, str]) -> bool:
        """A success status that is really a refusal (the account is out of quota)."""
        return False

    def resets_at(self, headers: dict[str, str], body: bytes, now: float) -> float | None:
        """When a rate-limited account may be used again, from the answer; None = unknown."""
        return retry_after(headers, now)

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
