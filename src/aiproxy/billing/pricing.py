"""Token usage and what it costs: the model table as a price book, and price rates.

Prices are USD per 1M tokens. Long-context tiers (`above_200k`, …) apply when the prompt
(input + cache write + cache read) exceeds the tier's threshold. A model the table does
not know is billed at its platform's most expensive known price: never free.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import select

from ..store.db import Database
from ..store.models import AIModel

PER_TOKEN = 1_000_000
_DATE_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2})$")
_TIER = re.compile(r"^above_(\d+)k$")


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0
    # The part of cache_creation_tokens written with a one-hour lifetime (Anthropic), priced apart.
    cache_creation_1h_tokens: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_creation_tokens + self.cache_read_tokens

    @property
    def prompt(self) -> int:
        return self.input_tokens + self.cache_creation_tokens + self.cache_read_tokens


@dataclass(frozen=True, slots=True)
class Prices:
    input: float
    output: float
    cache_creation: float
    cache_read: float
    cache_creation_1h: float = 0.0  # 0: charged at the cache_creation price


@dataclass(frozen=True, slots=True)
class ModelPrice:
    model_id: str
    platform: str
    enabled: bool
    base: Prices
    tiers: tuple[tuple[int, Prices], ...] = ()  # (threshold tokens, prices), highest first

    def prices_for(self, usage: Usage) -> Prices:
        prompt = usage.prompt
        for threshold, prices in self.tiers:
            if prompt > threshold:
                return prices
        return self.base


@dataclass(frozen=True, slots=True)
class Cost:
    input: float
    output: float
    cache_creation: float
    cache_read: float
    rate: float
    total: float  # list cost × rate: what is billed


def cost_of(usage: Usage, price: ModelPrice, rate: float) -> Cost:
    p = price.prices_for(usage)
    long_writes = min(usage.cache_creation_1h_tokens, usage.cache_creation_tokens)
    long_price = p.cache_creation_1h or p.cache_creation
    parts = (
        usage.input_tokens * p.input / PER_TOKEN,
        usage.output_tokens * p.output / PER_TOKEN,
        ((usage.cache_creation_tokens - long_writes) * p.cache_creation + long_writes * long_price)
        / PER_TOKEN,
        usage.cache_read_tokens * p.cache_read / PER_TOKEN,
    )
    return Cost(*parts, rate=rate, total=sum(parts) * rate)


def effective_rate(*, key_rate: float, user_rate: float, global_rate: float) -> float:
    """Global ≠1 overrides everything; else the key's rate if set (≠1), else the user's."""
    if global_rate != 1.0:
        return global_rate
    if key_rate != 1.0:
        return key_rate
    return user_rate


def _tiers(row: AIModel) -> tuple[tuple[int, Prices], ...]:
    tiers = []
    for name, values in (row.price_tiers or {}).items():
        match = _TIER.match(name)
        if not match or not isinstance(values, dict):
            continue
        tiers.append(
            (
                int(match.group(1)) * 1000,
                Prices(
                    float(values.get("input", row.input_price)),
                    float(values.get("output", row.output_price)),
                    float(values.get("cache_creation", row.cache_creation_price)),
                    float(values.get("cache_read", row.cache_read_price)),
                    float(values.get("cache_creation_1h", row.cache_creation_1h_price)),
                ),
            )
        )
    return tuple(sorted(tiers, reverse=True))


@dataclass(slots=True)
class PriceBook:
    by_id: dict[str, ModelPrice] = field(default_factory=dict)
    priciest: dict[str, ModelPrice] = field(default_factory=dict)  # per platform, for unknown models

    @classmethod
    async def load(cls, db: Database) -> PriceBook:
        async with db.session() as session:
            rows = list(await session.scalars(select(AIModel)))
        book = cls()
        for row in rows:
            price = ModelPrice(
                model_id=row.model_id,
                platform=row.platform,
                enabled=row.enabled,
                base=Prices(
                    row.input_price,
                    row.output_price,
                    row.cache_creation_price,
                    row.cache_read_price,
                    row.cache_creation_1h_price,
                ),
                tiers=_tiers(row),
            )
            book.by_id[row.model_id] = price
            for alias in row.aliases.split(","):
                if alias.strip():
                    book.by_id.setdefault(alias.strip(), price)
            top = book.priciest.get(row.platform)
            if top is None or (price.base.input + price.base.output) > (top.base.input + top.base.output):
                book.priciest[row.platform] = price
        return book

    def lookup(self, model: str) -> ModelPrice | None:
        found = self.by_id.get(model)
        if found is None:
            undated = _DATE_SUFFIX.sub("", model)
            if undated != model:
                found = self.by_id.get(undated)
        return found

    def fallback(self, platform: str) -> ModelPrice | None:
        return self.priciest.get(platform)
