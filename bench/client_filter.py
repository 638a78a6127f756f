"""What the client filter costs per request, in microseconds of CPU.

Builds the filter the relay would build from a freshly migrated database (the seeded client
types and rules), then times `check_client` on every recorded client request
(tests/fixtures/client-requests.jsonl) in four settings: filter off with no client list (the
default: nothing is identified), simple mode, strict mode, and strict mode with a key limited to
one client. The budget is 10 µs per request.

    .venv/bin/python bench/client_filter.py [--rounds 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiproxy.gateway.auth import Caller
from aiproxy.gateway.client_filter import BODYLESS_KINDS, ClientFilter, build_filter, check_client
from aiproxy.gateway.errors import GatewayError
from aiproxy.gateway.routes import match
from aiproxy.store import client_filter as store
from aiproxy.store.db import Database
from aiproxy.store.migrate import upgrade_to_head

FIXTURES = Path(__file__).parents[1] / "tests" / "fixtures" / "client-requests.jsonl"
BUDGET_US = 10.0


def relay_path(path: str) -> str:
    if path.startswith("/v1/messages"):
        return "/claude" + path
    if path.startswith(("/v1beta/", "/v1/models/")):
        return "/gemini" + path
    return path


def requests() -> list[tuple[str, dict[bytes, bytes], dict[str, Any] | None]]:
    found = []
    for line in FIXTURES.read_text().splitlines():
        record = json.loads(line)
        if record["method"] == "HEAD":
            continue
        path = relay_path(record["path"])
        endpoint = match(path)
        headers = {k.encode(): v.encode() for k, v in record["headers"].items()}
        conversation = (
            None
            if endpoint is None or endpoint.kind in BODYLESS_KINDS or endpoint.action == "countTokens"
            else record["body"]
        )
        found.append((path, headers, conversation))
    return found


async def seeded_filter() -> ClientFilter:
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite+aiosqlite:///{directory}/bench.db"
        await asyncio.to_thread(upgrade_to_head, url, Path(directory))
        db = Database(url)
        try:
            async with db.session() as session:
                return build_filter(*await store.load_all(session))
        finally:
            await db.close()


def caller(**fields: Any) -> Caller:
    base = Caller(
        key_id=1,
        user_id=1,
        username="bench",
        key_status="active",
        user_status="active",
        expires_at=None,
        allowed_platforms=None,
        allowed_models=None,
        rate_limit=0,
        daily_limit=0,
        monthly_quota=0.0,
        key_price_rate=1.0,
        user_price_rate=1.0,
        user_max_concurrency=0,
        account_group_id=None,
    )
    return replace(base, **fields)


def per_request_us(spec: ClientFilter, who: Caller, sample: list[Any], rounds: int) -> float:
    started = time.process_time()
    for _ in range(rounds):
        for path, headers, conversation in sample:
            try:  # noqa: SIM105 (a context manager would add its own cost to what is measured)
                check_client(spec, who, headers, path, conversation)
            except GatewayError:
                pass
    return (time.process_time() - started) / (rounds * len(sample)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=20000)
    args = parser.parse_args()
    seeded = asyncio.run(seeded_filter())
    sample = requests()
    rounds = max(1, args.rounds // len(sample))
    settings = {
        "off (default)": (seeded, caller()),
        "simple": (replace(seeded, enabled=True, strict=False), caller()),
        "strict": (replace(seeded, enabled=True, strict=True), caller()),
        "strict + key list": (
            replace(seeded, enabled=True, strict=True),
            caller(allowed_clients=frozenset({"claude-code"})),
        ),
    }
    print(f"{len(sample)} recorded requests × {rounds} rounds, {len(seeded.types)} client types")
    worst = 0.0
    for name, (spec, who) in settings.items():
        cost = per_request_us(spec, who, sample, rounds)
        worst = max(worst, cost)
        print(f"  {name:<20} {cost:6.2f} µs per request")
    print(f"worst {worst:.2f} µs: {'within' if worst <= BUDGET_US else 'OVER'} the {BUDGET_US:g} µs budget")


if __name__ == "__main__":
    main()
