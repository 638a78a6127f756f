"""`GET /metrics` after real SDK traffic: the figures match the request log and the usage table.

The session relay serves other tests too, so each test compares the metrics before and after its
own traffic (tests run one at a time). The multi-worker test starts a relay with two workers and
checks that any worker answering a scrape reports the requests of both.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiproxy.observe.metrics import FOLD_INTERVAL

from .conftest import Pool, Upstream
from .restarts import Backend, admin_with_account, started_relay

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(base_url: str, token: str | None = None) -> Samples:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    reply = httpx.get(f"{base_url}/metrics", headers=headers, timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and all(dict(sample_labels).get(k) == v for k, v in labels.items())
    )


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


def test_metrics_match_the_request_log_to_the_token(pool: Pool) -> None:
    pool.add_account("claude-official", settle=False)
    pool.add_account("openai")
    base = pool.relay.base_url
    before = scrape(base)
    claude = anthropic.Anthropic(base_url=f"{base}/claude", api_key=pool.key, max_retries=0)
    for _ in range(3):
        claude.messages.create(
            model="claude-opus-4-8", max_tokens=32, messages=[{"role": "user", "content": "hi"}]
        )
    with claude.messages.stream(
        model="claude-opus-4-8", max_tokens=32, messages=[{"role": "user", "content": "stream please"}]
    ) as stream:
        stream.get_final_message()
    chat = openai.OpenAI(base_url=f"{base}/openai/v1", api_key=pool.key, max_retries=0)
    chat.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello there"}])
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=f"{base}/claude", api_key="sk-nope", max_retries=0).messages.create(
            model="claude-opus-4-8", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    logs = pool.logs(expect=5)
    after = scrape(base)

    assert delta(before, after, "aiproxy_requests_total", status="success") == 5
    assert delta(before, after, "aiproxy_requests_total", route="claude.messages", status="success") == 4
    assert delta(before, after, "aiproxy_requests_total", route="openai.chat", model="gpt-4o") == 1
    assert delta(before, after, "aiproxy_requests_total", status="rejected", code="401") == 1
    by_kind = defaultdict(int)
    for row in logs:
        for kind in ("input", "output", "cache_creation", "cache_read"):
            by_kind[kind] += row[f"{kind}_tokens"]
    for kind, tokens in by_kind.items():
        assert delta(before, after, "aiproxy_tokens_total", kind=kind) == tokens, kind
    assert by_kind["input"] > 0 and by_kind["output"] > 0
    usage = pool.user.ok("GET", "/api/usage/summary")  # the usage table's view of the same traffic
    assert delta(before, after, "aiproxy_tokens_total") == sum(row["total_tokens"] for row in logs)
    assert usage["total_tokens"] == sum(row["total_tokens"] for row in logs)
    cost = sum(row["cost"] for row in logs)
    assert abs(delta(before, after, "aiproxy_cost_usd_total") - cost) < 1e-9
    assert cost > 0
    assert delta(before, after, "aiproxy_request_duration_seconds_count") == 6
    assert delta(before, after, "aiproxy_time_to_first_byte_seconds_count", route="claude.messages") == 1
    assert delta(before, after, "aiproxy_upstream_latency_seconds_count", outcome="ok") == 5
    assert total(after, "aiproxy_requests_in_flight") == 0
    assert total(after, "aiproxy_accounts", status="valid") >= 2
    assert ("aiproxy_slots_in_use", (("kind", "user"),)) in after
    # The key's five rows are written (pool.logs saw them); the refusal's may still be queued.
    written = delta(before, after, "aiproxy_recorder_rows_written_total")
    queued = total(after, "aiproxy_recorder_queue_depth")
    assert written >= 5 and total(after, "aiproxy_recorder_write_errors_total") == 0, (written, queued)


def test_unknown_model_names_do_not_make_new_series(pool: Pool) -> None:
    pool.add_account("claude-official")
    before = scrape(pool.relay.base_url)
    client = anthropic.Anthropic(base_url=f"{pool.relay.base_url}/claude", api_key=pool.key, max_retries=0)
    made_up = f"claude-made-up-{uuid.uuid4().hex[:8]}"
    client.messages.create(model=made_up, max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    pool.logs(expect=1)
    after = scrape(pool.relay.base_url)
    assert not any(made_up in str(labels) for _, labels in after)
    assert delta(before, after, "aiproxy_requests_total", model="other", status="success") == 1


def test_a_metrics_token_is_required_when_set(tmp_path: Path, upstream: Upstream) -> None:
    relay = started_relay(tmp_path, {"AIPROXY_METRICS_TOKEN": "scrape-secret"})
    try:
        assert httpx.get(f"{relay.base_url}/metrics").status_code == 401
        wrong = httpx.get(f"{relay.base_url}/metrics", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json() == {"code": 401, "message": "unauthorized"}
        assert total(scrape(relay.base_url, "scrape-secret"), "aiproxy_requests_in_flight") == 0
    finally:
        relay.stop()


def test_several_workers_report_their_sum_whichever_answers(
    tmp_path: Path, backend: Backend, upstream: Upstream
) -> None:
    if backend.name == "sqlite":
        pytest.skip("several workers share their pool and limits through Redis")
    relay = started_relay(tmp_path, {**backend.env, "AIPROXY_WORKERS": "2"})
    try:
        admin = admin_with_account(relay, f"w-{uuid.uuid4().hex[:8]}", upstream.base_url)
        time.sleep(0.3)
        key = admin.ok("POST", "/api/api-keys", json={"name": "workers"})["key"]
        admin.close()
        body = {"model": "claude-opus-4-8", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
        served = 0
        for _ in range(40):  # new connections: the kernel spreads them over both workers
            with httpx.Client(base_url=relay.base_url) as http:
                reply = http.post("/claude/v1/messages", json=body, headers={"x-api-key": key})
            served += reply.status_code == 200
        assert served == 40
        time.sleep(FOLD_INTERVAL + 0.5)  # each worker folds its tallies into the shared files this often
        seen = set()
        for _ in range(10):
            with httpx.Client(base_url=relay.base_url) as http:
                samples = scrape(str(http.base_url).rstrip("/"))
            seen.add(total(samples, "aiproxy_requests_total", route="claude.messages", status="success"))
        assert seen == {40.0}, seen
    finally:
        relay.stop()
