"""Metrics tallied per request and folded later report exactly what prometheus-client itself would.

The tallies write into prometheus-client's histogram children by their bucket values (see
observe/metrics.py): the reference here is the same histogram fed through its own `observe`, so
a prometheus-client release that changed how children keep buckets fails this test.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from aiproxy.billing.pricing import Cost, Usage
from aiproxy.billing.usage_event import UsageEvent
from aiproxy.observe import metrics as metrics_module
from aiproxy.observe.metrics import MULTIPROC_ENV, Metrics

# Bounds themselves, values between them, zero and beyond the last bound (+Inf).
DURATIONS_MS = [0, 1, 5, 6, 10, 250, 251, 999, 1000, 1001, 30_000, 600_000, 700_000]


def event(duration_ms: int, *, first_byte_ms: int = 0, tokens: int = 0, cost: float = 0.0) -> UsageEvent:
    return UsageEvent(
        request_id="r",
        user_id=1,
        api_key_id=1,
        account_id=1,
        platform="claude-official",
        model="claude-sonnet-4-5",
        upstream_model="claude-sonnet-4-5",
        path="/claude/v1/messages",
        stream=bool(first_byte_ms),
        status="success",
        status_code=200,
        usage=Usage(input_tokens=tokens, output_tokens=2 * tokens) if tokens else None,
        cost=Cost(0.0, 0.0, 0.0, 0.0, 1.0, cost) if cost else None,
        duration_ms=duration_ms,
        first_byte_ms=first_byte_ms,
        created_at=datetime.now(UTC),
    )


def samples(text: bytes | str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text if isinstance(text, str) else text.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def histogram_samples(found: dict, name: str) -> dict:
    return {key: value for key, value in found.items() if key[0].startswith(name) and "created" not in key[0]}


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> Metrics:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    return Metrics()


def test_folded_histograms_equal_prometheus_own(metrics: Metrics) -> None:
    reference_registry = CollectorRegistry()
    reference = Histogram(
        "aiproxy_request_duration_seconds",
        "reference",
        ("route", "platform"),
        buckets=metrics_module._LATENCY_BUCKETS,
        registry=reference_registry,
    )
    child = reference.labels("claude.messages", "claude-official")
    for duration in DURATIONS_MS:
        metrics.request_done("claude.messages", event(duration), known_model=True)
        child.observe(duration / 1000)
    metrics.fold()
    ours = histogram_samples(samples(generate_latest(metrics.registry)), "aiproxy_request_duration_seconds")
    theirs = histogram_samples(
        samples(generate_latest(reference_registry)), "aiproxy_request_duration_seconds"
    )
    assert ours == theirs
    assert ours[
        (
            "aiproxy_request_duration_seconds_count",
            (("platform", "claude-official"), ("route", "claude.messages")),
        )
    ] == len(DURATIONS_MS)


def test_nothing_is_counted_twice_or_lost_between_folds(metrics: Metrics) -> None:
    labels = (
        ("code", "200"),
        ("model", "claude-sonnet-4-5"),
        ("platform", "claude-official"),
        ("route", "claude.messages"),
        ("status", "success"),
    )
    metrics.request_done("claude.messages", event(100, tokens=10, cost=0.25), known_model=True)
    metrics.fold()
    metrics.fold()  # nothing new: adds nothing
    metrics.request_done(
        "claude.messages", event(100, first_byte_ms=40, tokens=5, cost=0.5), known_model=True
    )
    metrics.upstream_answered("claude-official", "ok", 0.03)
    metrics.in_flight = 3
    found = samples(asyncio.run(metrics.exposition()))  # a scrape folds what is pending first
    assert found[("aiproxy_requests_total", labels)] == 2
    token_labels = (("model", "claude-sonnet-4-5"), ("platform", "claude-official"))
    assert found[("aiproxy_tokens_total", (("kind", "input"), *token_labels))] == 15
    assert found[("aiproxy_tokens_total", (("kind", "output"), *token_labels))] == 30
    assert ("aiproxy_tokens_total", (("kind", "cache_read"), *token_labels)) not in found  # never reported
    assert found[("aiproxy_cost_usd_total", token_labels)] == 0.75
    route = (("platform", "claude-official"), ("route", "claude.messages"))
    assert found[("aiproxy_time_to_first_byte_seconds_count", route)] == 1
    assert found[("aiproxy_time_to_first_byte_seconds_sum", route)] == 0.04
    account, outcome = ("account_type", "claude-official"), ("outcome", "ok")
    assert found[("aiproxy_upstream_latency_seconds_count", (account, outcome))] == 1
    assert found[("aiproxy_upstream_latency_seconds_bucket", (account, ("le", "0.05"), outcome))] == 1
    assert found[("aiproxy_upstream_latency_seconds_bucket", (account, ("le", "0.025"), outcome))] == 0
    assert found[("aiproxy_requests_in_flight", ())] == 3


async def test_folds_run_on_their_own_and_once_more_at_stop(
    metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_module, "FOLD_INTERVAL", 0.02)
    metrics.start()
    metrics.request_done("claude.messages", event(10), known_model=True)
    count = (
        "aiproxy_request_duration_seconds_count",
        (("platform", "claude-official"), ("route", "claude.messages")),
    )
    assert samples(generate_latest(metrics.registry)).get(count, 0) == 0  # tallied, not folded yet
    await asyncio.sleep(0.1)
    assert samples(generate_latest(metrics.registry))[count] == 1  # folded by the timer
    metrics.request_done("claude.messages", event(10), known_model=True)
    metrics.stop()
    assert samples(generate_latest(metrics.registry))[count] == 2  # the last tallies, at stop
