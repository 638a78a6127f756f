"""One HTTP exchange with a vendor, through the relay's HTTP client and the account's proxy.

The client is the gateway's (`UpstreamClients.http`): it does not decompress (the relay streams
bodies through untouched) and adds no User-Agent or Content-Type of its own, so every request
here says `accept-encoding: identity` and sets its own headers.
Redirects are never followed: a vendor API that redirects is a Cloudflare challenge or a
wrong URL, and following it would turn a POST into something else.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

from ..gateway.http_client import HttpClient, UpstreamError
from .errors import OAuthError, vendor_error

# Token endpoints answer in well under a second; a login step that takes longer is failing.
DEFAULT_TIMEOUT = 30.0
MAX_ANSWER_BYTES = 1024 * 1024  # token answers are a few KB; a megabyte is not one


@dataclass(frozen=True, slots=True)
class Transport:
    """Where requests go out: the relay's HTTP client, the account's proxy, the whole call's limit."""

    client: HttpClient
    proxy_url: str | None = None
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased
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
        async with asyncio.timeout(transport.timeout):
            response = await transport.client.request(
                method,
                url,
                headers=sent,
                body=data or b"",
                proxy_url=transport.proxy_url,
                read_timeout=transport.timeout,
            )
            try:
                raw = await response.read(MAX_ANSWER_BYTES + 1)
            finally:
                response.release()
            status, answer_headers = response.status, response.headers
    except TimeoutError:
        raise OAuthError(f"{what}: no answer from {_host(url)} in time") from None
    except (UpstreamError, ValueError) as exc:  # ValueError: a URL that cannot be parsed
        # The class names the reason (ConnectFailed, ReadTimedOut, AnswerBroken); its text is not
        # repeated, so no query string reaches a message.
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
