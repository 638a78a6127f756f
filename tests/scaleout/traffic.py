"""Continuous traffic for the rolling restart: clients that take turns between the instances and,
like a load balancer, send a request again to the other instance when its connection fails.

Each attempt has a tag of its own (its User-Agent), so the request log can be checked per attempt:
an answered one must have exactly one row, billed for what the client was given; one whose
connection failed never reached a gateway (a stopping instance finishes what it accepted).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from .load import body, fresh_connections, send


@dataclass
class Attempt:
    tag: str
    instance: int
    started: float  # time.monotonic()
    done: float
    status: int | None = None  # None: the connection failed (refused, reset, cut mid-answer)
    tokens: int = 0
    error: str = ""


@dataclass
class Traffic:
    bases: Sequence[str]
    key: str
    clients: int = 8
    attempts: list[Attempt] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def answered(self) -> list[Attempt]:
        return [a for a in self.attempts if a.status is not None]

    @property
    def failed(self) -> list[Attempt]:
        return [a for a in self.attempts if a.status is None]

    def start(self) -> None:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=60)
        assert not self._thread.is_alive()

    async def _run(self) -> None:
        async with fresh_connections() as client:
            await asyncio.gather(*(self._client(client, index) for index in range(self.clients)))

    async def _client(self, client: httpx.AsyncClient, index: int) -> None:
        target = index % len(self.bases)
        n = 0
        while not self._stop.is_set():
            n += 1
            tag = f"rolling/{index}-{n}"
            started = time.monotonic()
            attempt = Attempt(tag, target, started, started)
            try:
                reply = await send(client, self.bases[target], self.key, tag, body(stream=n % 2 == 0))
                attempt.status, attempt.tokens = reply.status, reply.tokens
            except httpx.TransportError as exc:  # refused, reset, or cut before the answer was whole
                attempt.error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(0.01)  # what a balancer's retry costs, more or less
            attempt.done = time.monotonic()
            self.attempts.append(attempt)
            target = (target + 1) % len(self.bases)  # round robin, and a failed one goes elsewhere
