"""Expected figures, derived from what the fake upstream reported and the model table."""

from __future__ import annotations

from typing import Any

from ..support import Api

TOKEN_FIELDS = (
    ("input_tokens", "input_tokens", "input_price"),
    ("output_tokens", "output_tokens", "output_price"),
    ("cache_creation_input_tokens", "cache_creation_tokens", "cache_creation_price"),
    ("cache_read_input_tokens", "cache_read_tokens", "cache_read_price"),
)


def model_prices(admin: Api, model_id: str) -> dict[str, Any]:
    items = admin.ok("GET", f"/api/admin/models?keyword={model_id}&page_size=100")["items"]
    return next(m for m in items if m["model_id"] == model_id)


def expected_cost(tokens: dict[str, int], prices: dict[str, Any], rate: float = 1.0) -> float:
    return sum(tokens[wire] * prices[price] for wire, _, price in TOKEN_FIELDS) / 1_000_000 * rate


def assert_billed(
    log: dict[str, Any], tokens: dict[str, int], prices: dict[str, Any], rate: float = 1.0
) -> None:
    """The request log carries exactly the upstream's tokens and their price."""
    for wire, column, _ in TOKEN_FIELDS:
        assert log[column] == tokens[wire], (column, log, tokens)
    assert log["total_tokens"] == sum(tokens[wire] for wire, _, _ in TOKEN_FIELDS)
    assert abs(log["cost"] - expected_cost(tokens, prices, rate)) < 1e-12, (log["cost"], tokens)
