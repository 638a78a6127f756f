"""One HTTP exchange with a vendor, through the relay's shared aiohttp sessions and a proxy.

The sessions come from the gateway (`UpstreamClients.for_proxy`): they do not decompress
(the relay streams bodies through untouched) and add no User-Agent or Content-Type of their
own, so every request here says `accept-encoding: identity` and sets its own headers.
Redirects are never followed: a vendor API that redirects is a Cloudflare challenge or a
wrong URL, and following it would turn a POST into something else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import orjson
from multidict import CIMultiDictProxy

from .errors import OAuthError, vendor_error

# Token endpoints answer in well under a second; a login step that takes longer is failing.
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10)
MAX_ANSWER_BYTES = 1024 * 1024  # token answers are a few KB; a megabyte is not one


@dataclass(frozen=True, slots=True)
class Transport:
    """Where requests go out: the aiohttp session and the `proxy=` argument that goes with it."""

    session: aiohttp.ClientSession
    proxy: str | None = None
    timeout: aiohttp.ClientTimeout = field(default=DEFAULT_TIMEOUT)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    text: str
    body: Any  # decoded JSON, or None when the answer was not JSON

    @property
    def is_html(self) -> bool:
        kind = self.headers.get("content-type", "")
        return "html" in kind or self.text.lstrip()[:1] == "<"


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


async def send(
    transport: Transport,
    method: str,
    url: str,
    *,
    what: str,
    headers: dict[str, str],
    json: Any = None,
    form: dict[str, str] | None = None,
) -> Answer:
    """The vendor's answer, whatever its status; OAuthError (non-terminal) when there is none.

    `what` names the step in error messages ("claude token endpoint"); URLs are not repeated
    in messages beyond their host, since a query may carry a code or a state.
    """
    sent = {"accept-encoding": "identity", **headers}
    data: bytes | None = None
    if json is not None:
        data = orjson.dumps(json)
        sent.setdefault("content-type", "application/json")
    elif form is not None:
        data = urlencode(form).encode()
        sent.setdefault("content-type", "application/x-www-form-urlencoded")
    try:
        async with transport.session.request(
            method,
            url,
            data=data,
            headers=sent,
            proxy=transport.proxy,
            timeout=transport.timeout,
            allow_redirects=False,
        ) as response:
            raw = await response.content.read(MAX_ANSWER_BYTES + 1)
            status, answer_headers = response.status, response.headers
    except TimeoutError:
        raise OAuthError(f"{what}: no answer from {_host(url)} in time") from None
    except (aiohttp.ClientError, ValueError) as exc:  # ValueError: a URL or header aiohttp cannot send
        # The exception text names the host and the reason, never a body or a query string.
        reason = type(exc).__name__
        raise OAuthError(f"{what}: cannot reach {_host(url)} ({reason})") from None
    if len(raw) > MAX_ANSWER_BYTES:
        raise OAuthError(f"{what}: answer larger than {MAX_ANSWER_BYTES} bytes", status=status)
    text = raw.decode("utf-8", "replace")
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = None
    return Answer(status, answer_headers, text, body)


def expect_json(answer: Answer, what: str) -> dict[str, Any]:
    """The JSON object of a 2xx answer; the vendor's own error otherwise."""
    if answer.status >= 400:
        raise vendor_error(what, answer.status, answer.body, answer.text, answer.headers.get("retry-after"))
    if 300 <= answer.status < 400:
        raise OAuthError(f"{what}: unexpected redirect (HTTP {answer.status})", status=answer.status)
    if not isinstance(answer.body, dict):
        raise OAuthError(
            f"{what}: the answer is not a JSON object (HTTP {answer.status})", status=answer.status
        )
    return answer.body
