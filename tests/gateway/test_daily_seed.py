"""The daily request count of a key, rebuilt from the request log after a restart, counts what
admission counts: requests that reached an account, not refusals, model lists or token counting."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from .conftest import Upstream
from .restarts import Backend, admin_with_account, started_relay

BODY = {"model": "claude-opus-4-8", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


def test_daily_count_after_a_restart_ignores_uncounted_rows(
    tmp_path: Path, backend: Backend, upstream: Upstream
) -> None:
    relay = started_relay(tmp_path, backend.env)
    try:
        admin = admin_with_account(relay, "seed-test", upstream.base_url)
        created = admin.ok("POST", "/api/api-keys", json={"name": "daily"})
        admin.ok("PUT", f"/api/admin/api-keys/{created['id']}", json={"daily_limit": 3, "rate_limit": 0})
        headers = {"x-api-key": created["key"]}
        claude = f"{relay.base_url}/claude/v1/messages"
        if "AIPROXY_REDIS_URL" in backend.env:
            time.sleep(0.6)  # with Redis the gateway checks the pool version every half second
        assert httpx.post(claude, json=BODY, headers=headers).status_code == 200
        for _ in range(2):
            assert httpx.get(f"{relay.base_url}/claude/v1/models", headers=headers).status_code == 200
        assert httpx.post(f"{claude}/count_tokens", json=BODY, headers=headers).status_code == 200
        assert httpx.post(claude, content=b"{bad", headers=headers).status_code == 400
        admin.close()
    finally:
        relay.stop()
    relay.start()  # in-process counters are gone: the day's count is rebuilt from the log
    try:
        statuses = [httpx.post(claude, json=BODY, headers=headers).status_code for _ in range(3)]
        assert statuses == [200, 200, 429], statuses
    finally:
        relay.stop()
