"""The gateway's caches of database rows, registered for a sync (see runtime_caches.py).

In registration order, which is the order of a reload:

- `oauth_tokens`: access tokens newer than the pool snapshot (`TokenStore`), dropped before the
  pool reloads: each was saved first, so the reload brings it back from the database;
- `account_pool`: accounts with their groups and proxies, the default group, the error rules and
  custom error messages (`AccountPool`); announced through the pool version;
- `api_keys`: the snapshots of API keys, their users and packages (`KeyCache`), emptied; announced
  through the callers version;
- `model_prices`: the model table as the price book (prices, aliases, enabled models, the
  `/v1/models` lists);
- `client_filter`: the client filter, its client types and rules.

The price book and the client filter also follow the pool version on their own (`Gateway.
_refresh_snapshots`); they reload here as well so that a sync does not depend on the pool version
having moved on this worker.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from ..billing.pricing import PriceBook
from ..runtime_caches import RuntimeCaches
from ..store import client_filter as client_filter_store
from ..store.accounts import bump_pool_version
from ..store.users import bump_callers_version
from .client_filter import build_filter

if TYPE_CHECKING:
    from .pipeline import Gateway


def register_caches(gateway: Gateway, caches: RuntimeCaches) -> None:
    state = gateway.services.state
    caches.register("oauth_tokens", partial(_forget_tokens, gateway))
    caches.register("account_pool", gateway.pool.reload_now, announce=partial(bump_pool_version, state))
    caches.register("api_keys", partial(_forget_keys, gateway), announce=partial(bump_callers_version, state))
    caches.register("model_prices", partial(_reload_prices, gateway))
    caches.register("client_filter", partial(_reload_client_filter, gateway))


async def _forget_tokens(gateway: Gateway) -> None:
    gateway.tokens.forget_live()


async def _forget_keys(gateway: Gateway) -> None:
    gateway.keys.forget_all()


async def _reload_prices(gateway: Gateway) -> None:
    # Replaced whole: a request under way keeps the price its plan already holds.
    gateway.prices = await PriceBook.load(gateway.services.db)


async def _reload_client_filter(gateway: Gateway) -> None:
    async with gateway.services.db.session() as session:
        loaded = await client_filter_store.load_all(session)
    gateway.client_filter = build_filter(*loaded)
