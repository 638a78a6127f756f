"""A fast fake upstream speaking the Anthropic, OpenAI and Gemini wire formats.

Used by the relay's tests (as the upstream the relay forwards to) and by benchmarks (relay vs direct).
Usage is deterministic: input tokens = prompt characters // 4 (min 1, see ``count_input_tokens``),
output tokens = number of reply chunks (``words``, default 8, capped by the client's max tokens).
Every request is recorded with the usage actually reported on the wire.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

from aiohttp import web

from .common import RequestRecord, count_input_tokens, reply_chunks
from .oauth import OAUTH, OAuthMock
from .server import DEFAULT_WORDS, STATE, MockState, build_app
from .switches import MODES, Behaviour

__all__ = [
    "DEFAULT_WORDS",
    "MODES",
    "Behaviour",
    "MockState",
    "MockUpstream",
    "OAuthMock",
    "RequestRecord",
    "build_app",
    "count_input_tokens",
    "reply_chunks",
    "run",
]


def run(host: str, port: int, *, words: int = DEFAULT_WORDS, max_records: int | None = 10_000) -> None:
    """Serve the mock until interrupted (blocking). Uses uvloop when available, for benchmarks."""
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a project dependency
        loop = asyncio.new_event_loop()
    app = build_app(words=words, max_records=max_records)
    # No access log: per-request logging would dominate the cost of a request in benchmarks.
    web.run_app(
        app, host=host, port=port, access_log=None, loop=loop, shutdown_timeout=1.0, auto_decompress=False
    )


class MockUpstream:
    """Run the mock on 127.0.0.1 (free port) inside the current event loop.

    >>> async with MockUpstream() as upstream:
    ...     client = anthropic.AsyncAnthropic(base_url=upstream.base_url, api_key="k")
    ...     upstream.requests[-1]["usage"]
    """

    def __init__(
        self,
        *,
        words: int = DEFAULT_WORDS,
        max_records: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.app = build_app(words=words, max_records=max_records)
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def state(self) -> MockState:
        return self.app[STATE]

    @property
    def oauth(self) -> OAuthMock:
        """The fake OAuth providers: the same knobs as ``/__mock/oauth/*`` without HTTP."""
        return self.app[OAUTH]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[RequestRecord]:
        return self.state.requests

    def url(self, path: str) -> str:
        return self.base_url + path

    def set_behaviour(
        self, mode: str = "ok", *, key: str = "*", append: bool = False, **fields: Any
    ) -> Behaviour:
        """Same as ``POST /__mock/behaviour`` without the HTTP round trip."""
        behaviour = Behaviour(mode=mode, key=key, **fields)
        self.state.behaviours.set(behaviour, append=append)
        return behaviour

    def reset(self) -> None:
        """Forget behaviours and recorded requests (``POST /__mock/reset``)."""
        self.state.reset()

    async def start(self) -> MockUpstream:
        # A short shutdown timeout: a test that leaves a slow stream open must not stall teardown.
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5, auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> MockUpstream:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
