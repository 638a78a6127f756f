"""Failure switches of the mock upstream.

Behaviour can be chosen two ways:

* per request, by ``x-mock-*`` request headers (handy when a test talks to the mock directly);
* globally, through ``POST /__mock/behaviour``, keyed by the upstream credential. The relay may strip
  unknown headers, but it always forwards the account's api key, so keying by credential lets a test
  make exactly one pooled account fail.

Header values override the fields of whatever stored behaviour matched, so ``x-mock-words: 3`` also
works together with a stored ``429``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from multidict import CIMultiDictProxy

MODES = frozenset({"ok", "429", "529", "500", "401", "403", "slow", "cut", "rejected", "html"})
# Modes answered with an HTTP error before any generation happens.
ERROR_MODES = frozenset({"429", "529", "500", "401", "403"})

# request header -> (Behaviour field, converter)
_HEADER_FIELDS: dict[str, tuple[str, type]] = {
    "x-mock-mode": ("mode", str),
    "x-mock-delay-ms": ("delay_ms", int),
    "x-mock-retry-after": ("retry_after", int),
    "x-mock-body": ("body", str),
    "x-mock-words": ("words", int),
    "x-mock-cache-read": ("cache_read", int),
    "x-mock-cache-creation": ("cache_creation", int),
    "x-mock-cache-creation-1h": ("cache_creation_1h", int),
    "x-mock-latency-ms": ("latency_ms", int),
}


@dataclass(slots=True)
class Behaviour:
    """How the mock answers one request.

    ``count`` is how many more requests this behaviour applies to (-1 = forever); ``delay_ms`` is the
    delay per stream chunk in ``slow`` mode (and the single delay before a non-stream answer);
    ``latency_ms`` is a delay before the first byte in any mode; ``path`` restricts the behaviour to
    request paths containing that substring (so e.g. model listing does not consume a ``count``).
    """

    mode: str = "ok"
    key: str = "*"
    count: int = -1
    delay_ms: int = 0
    retry_after: int = 30
    body: str | None = None
    words: int | None = None
    cache_read: int = 0
    cache_creation: int = 0
    cache_creation_1h: int = 0  # of cache_creation, written with the one-hour TTL (Anthropic wire only)
    latency_ms: int = 0
    path: str | None = None

    def __post_init__(self) -> None:
        # JSON and headers may carry numbers as strings ("429", "2"); normalise once here.
        self.mode = str(self.mode)
        numbers = ("count", "delay_ms", "retry_after", "cache_read", "cache_creation", "cache_creation_1h")
        for name in (*numbers, "latency_ms"):
            setattr(self, name, int(getattr(self, name)))
        if self.words is not None:
            self.words = int(self.words)
        if self.mode not in MODES:
            raise ValueError(f"unknown mock mode {self.mode!r}; expected one of {sorted(MODES)}")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Behaviour:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names - {"append"}
        if unknown:
            raise ValueError(f"unknown behaviour fields: {sorted(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def header_overrides(base: Behaviour, headers: CIMultiDictProxy[str]) -> Behaviour:
    """Return ``base`` with any ``x-mock-*`` header applied (a copy, the stored one stays intact)."""
    changes: dict[str, Any] = {}
    for header, (field, convert) in _HEADER_FIELDS.items():
        value = headers.get(header)
        if value is not None:
            changes[field] = convert(value)
    if not changes:
        return base
    return dataclasses.replace(base, **changes)


class BehaviourStore:
    """Queues of behaviours per upstream key; ``"*"`` matches any key without a queue of its own."""

    def __init__(self) -> None:
        self._by_key: dict[str, list[Behaviour]] = {}

    def set(self, behaviour: Behaviour, *, append: bool = False) -> None:
        # Replacing by default keeps tests simple; append lets one key fail in a scripted sequence.
        if behaviour.count == 0:  # "apply to no request": just forget this key's behaviour
            if not append:
                self._by_key.pop(behaviour.key, None)
            return
        if append:
            self._by_key.setdefault(behaviour.key, []).append(behaviour)
        else:
            self._by_key[behaviour.key] = [behaviour]

    def clear(self) -> None:
        self._by_key.clear()

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        return {key: [b.to_json() for b in queue] for key, queue in self._by_key.items()}

    def take(self, key: str | None, path: str) -> Behaviour | None:
        """Consume one application of the behaviour that matches this request, if any."""
        if not self._by_key:  # the hot path in benchmarks: nothing configured
            return None
        for scope in (key, "*"):
            queue = self._by_key.get(scope) if scope is not None else None
            if not queue:
                continue
            for index, behaviour in enumerate(queue):
                if behaviour.path and behaviour.path not in path:
                    continue
                self._consume(scope, queue, index)
                return behaviour
        return None

    def _consume(self, scope: str, queue: list[Behaviour], index: int) -> None:
        behaviour = queue[index]
        if behaviour.count < 0:
            return
        behaviour.count -= 1
        if behaviour.count <= 0:
            del queue[index]
            if not queue:
                del self._by_key[scope]
