"""Cost arithmetic: list prices per 1M tokens, long-context tiers, one-hour cache writes, rates."""

from __future__ import annotations

from aiproxy.billing.pricing import ModelPrice, PriceBook, Prices, Usage, cost_of, effective_rate
from aiproxy.store.db import Database
from aiproxy.store.models import AIModel

SONNET = ModelPrice(
    model_id="m",
    platform="claude-official",
    enabled=True,
    base=Prices(input=3.0, output=15.0, cache_creation=3.75, cache_read=0.3, cache_creation_1h=6.0),
    tiers=(
        (200_000, Prices(input=6.0, output=22.5, cache_creation=7.5, cache_read=0.6, cache_creation_1h=12.0)),
    ),
)


def test_each_token_kind_at_its_price() -> None:
    usage = Usage(input_tokens=1000, output_tokens=500, cache_creation_tokens=2000, cache_read_tokens=4000)
    cost = cost_of(usage, SONNET, rate=1.0)
    assert cost.input == 1000 * 3.0 / 1e6 and cost.output == 500 * 15.0 / 1e6
    assert cost.cache_creation == 2000 * 3.75 / 1e6 and cost.cache_read == 4000 * 0.3 / 1e6
    assert abs(cost.total - (0.003 + 0.0075 + 0.0075 + 0.0012)) < 1e-15


def test_one_hour_cache_writes_use_their_own_price() -> None:
    usage = Usage(cache_creation_tokens=1000, cache_creation_1h_tokens=400)
    assert abs(cost_of(usage, SONNET, 1.0).cache_creation - (600 * 3.75 + 400 * 6.0) / 1e6) < 1e-15


async def test_the_price_book_keeps_every_stored_price(db: Database) -> None:
    """Each price column of a stored model reaches the cost (the one-hour write price included)."""
    async with db.transaction() as session:
        session.add(
            AIModel(
                model_id="m",
                model_name="m",
                platform="claude-official",
                input_price=3.0,
                output_price=15.0,
                cache_creation_price=3.75,
                cache_read_price=0.3,
                cache_creation_1h_price=6.0,
                price_tiers={"above_200k": {"input": 6.0, "cache_creation_1h": 12.0}},
            )
        )
    price = (await PriceBook.load(db)).lookup("m")
    assert price is not None and price.base == SONNET.base
    usage = Usage(input_tokens=10, cache_creation_tokens=1000, cache_creation_1h_tokens=400)
    assert abs(cost_of(usage, price, 1.0).cache_creation - (600 * 3.75 + 400 * 6.0) / 1e6) < 1e-15
    assert price.tiers[0][1].cache_creation_1h == 12.0


def test_long_context_tier_applies_above_its_threshold() -> None:
    short = Usage(input_tokens=150_000, cache_read_tokens=50_000, output_tokens=10)
    long = Usage(input_tokens=150_000, cache_read_tokens=50_001, output_tokens=10)
    assert cost_of(short, SONNET, 1.0).output == 10 * 15.0 / 1e6
    assert cost_of(long, SONNET, 1.0).output == 10 * 22.5 / 1e6


def test_rates() -> None:
    assert effective_rate(key_rate=1.0, user_rate=0.5, global_rate=1.0) == 0.5
    assert effective_rate(key_rate=2.0, user_rate=0.5, global_rate=1.0) == 2.0
    assert effective_rate(key_rate=2.0, user_rate=0.5, global_rate=3.0) == 3.0
    usage = Usage(input_tokens=100_000)  # under the long-context threshold: base price 3.0
    assert cost_of(usage, SONNET, 0.0).total == 0.0
    assert abs(cost_of(usage, SONNET, 0.5).total - 0.15) < 1e-15
