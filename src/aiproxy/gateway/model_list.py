"""The model list routes (`GET /claude/v1/models`, `/openai/v1/models`, `/gemini/v1beta/models`):
answered by the relay from its price table, in the protocol of the route, never by an upstream."""

from __future__ import annotations

import orjson

from ..billing.pricing import PriceBook
from .auth import Caller
from .errors import CLAUDE, GEMINI


def model_list(family: str, caller: Caller, prices: PriceBook) -> bytes:
    """Enabled models of the route's platform that this key may use."""
    wanted = {"claude-official"} if family == CLAUDE else {"gemini"} if family == GEMINI else None
    allowed = caller.allowed_models
    models = sorted(
        m
        for m, p in prices.by_id.items()
        if p.enabled
        and p.model_id == m
        and (wanted is None or p.platform in wanted)
        and (allowed is None or m in allowed)
    )
    if family == GEMINI:
        return orjson.dumps({"models": [{"name": f"models/{m}", "displayName": m} for m in models]})
    if family == CLAUDE:
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
            for m in models
        ]
        return orjson.dumps(
            {
                "data": data,
                "has_more": False,
                "first_id": models[0] if models else None,
                "last_id": models[-1] if models else None,
            }
        )
    return orjson.dumps(
        {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": prices.by_id[m].platform}
                for m in models
            ],
        }
    )
