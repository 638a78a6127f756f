"""The seeded model table: current public list prices (USD per 1M tokens) shipped with the relay.

`model_prices.json` lists each model's provider and prices, including cache prices and
long-context tiers (`input_above_200k`, …), and maps dated ids to their base model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..store.models import AIModel

PROVIDER_PLATFORMS = {"claude": "claude-official", "openai": "openai", "gemini": "gemini"}
MODEL_PLATFORMS = tuple(PROVIDER_PLATFORMS.values())
_TIER_FIELD = re.compile(r"^(input|output|cache_creation|cache_read|cache_creation_1h)_(above_\w+)$")
_UPPER_WORDS = {"gpt": "GPT", "ft": "FT", "tts": "TTS", "er": "ER", "api": "API"}


@dataclass(frozen=True, slots=True)
class SeedResult:
    created: int
    updated: int

    def as_dict(self) -> dict[str, int]:
        return {"created": self.created, "updated": self.updated}


def display_name(model_id: str) -> str:
    """`claude-sonnet-4-5` → `Claude Sonnet 4.5`, `gpt-4o-mini` → `GPT 4o Mini`."""
    words: list[str] = []
    for part in re.split(r"[-:]", model_id):
        if words and part.isdigit() and words[-1].replace(".", "").isdigit():
            words[-1] += "." + part
        elif part.isdigit() or part[:1].isdigit():
            words.append(part)
        else:
            words.append(_UPPER_WORDS.get(part, part.capitalize()))
    return " ".join(words)


def _price(entry: dict[str, Any], field: str) -> float:
    value = entry.get(field)
    return float(value) if value is not None else 0.0


@cache
def default_models() -> tuple[dict[str, Any], ...]:
    """Column values for every seeded model, in table order."""
    raw = json.loads(resources.files(__package__).joinpath("model_prices.json").read_text())
    aliases: dict[str, list[str]] = {}
    for dated, base in raw.get("dated_aliases", {}).items():
        aliases.setdefault(base, []).append(dated)
    rows = []
    for order, entry in enumerate(raw["models"]):
        tiers: dict[str, dict[str, float]] = {}
        for field, price in entry.items():
            match = _TIER_FIELD.match(field)
            if match and price is not None:
                tiers.setdefault(match.group(2), {})[match.group(1)] = float(price)
        rows.append(
            {
                "model_id": entry["id"],
                "model_name": display_name(entry["id"]),
                "platform": PROVIDER_PLATFORMS[entry["provider"]],
                "mode": entry.get("mode", "chat"),
                "input_price": _price(entry, "input"),
                "output_price": _price(entry, "output"),
                "cache_creation_price": _price(entry, "cache_creation"),
                "cache_read_price": _price(entry, "cache_read"),
                "cache_creation_1h_price": _price(entry, "cache_creation_1h"),
                "price_tiers": tiers,
                "max_input_tokens": int(entry.get("max_input_tokens") or 0),
                "max_output_tokens": int(entry.get("max_output_tokens") or 0),
                "aliases": ",".join(sorted(aliases.get(entry["id"], []))),
                "sort_order": order,
                "is_default": True,
                "enabled": True,
            }
        )
    return tuple(rows)


async def seed_models(session: AsyncSession, *, reset: bool) -> SeedResult:
    """Insert missing seeded models; with `reset`, also restore seeded ones to their defaults.

    Models an admin added under other ids are never touched.
    """
    existing = {m.model_id: m for m in await session.scalars(select(AIModel))}
    created = updated = 0
    for values in default_models():
        row = existing.get(values["model_id"])
        if row is None:
            session.add(AIModel(**values))
            created += 1
        elif reset:
            for name, value in values.items():
                setattr(row, name, value)
            updated += 1
    await session.flush()
    return SeedResult(created=created, updated=updated)
