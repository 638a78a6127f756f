"""Prometheus metrics: what the gateway served, how fast, what it cost, and the live state behind it.

Counted where every request ends (the gateway's one request-log row, `Gateway._record`), so a
metric and the usage table agree to the token: requests by route, platform, model and outcome;
latency, time to first byte; tokens by kind and dollars. Upstream latency is observed per attempt
(time until the upstream's response headers). Accounts by status, slots in use and the recorder's
queue are read when Prometheus scrapes.

Several workers on one host (`AIPROXY_WORKERS` > 1) answer `/metrics` on one port, each scrape
reaching any of them: `prepare_workers` then switches prometheus-client to its multiprocess mode
before the workers start, so every worker writes its figures to files under `<data dir>/metrics`
and the worker that is scraped adds them all up (counters and histograms summed, in-flight summed
over live workers, queue depth summed). Figures read from shared state at scrape time are the same
from any worker. Separate instances (hosts, containers) are separate scrape targets, told apart
by Prometheus' own `instance` label.

Model names are client input: a model the price table does not know is counted as `other`, so a
client cannot create series at will.

A finished request adds to plain tallies (integers, floats, a bucket count found by bisection);
they are folded into prometheus-client's values when a scrape is answered and every
`FOLD_INTERVAL` seconds (and when the process stops). prometheus-client takes a lock and goes
through several method calls for every increment, about ten per request, which cost more than
everything else the metrics do on the request path. The price: with several workers, the worker
answering a scrape sees the others' figures as they were at most `FOLD_INTERVAL` ago.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ..billing.usage_event import UsageEvent

# Figures read at scrape time (accounts, slots), supplied by the gateway.
LiveFigures = Callable[[], Awaitable[list["Metric"]]]
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OTHER_MODEL = "other"
FOLD_INTERVAL = 1.0  # seconds between folds of the tallies into prometheus-client's values
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_TOKEN_KINDS = ("input", "output", "cache_creation", "cache_read")


def prepare_workers(data_dir: Path, workers: int) -> None:
    """Before several workers start (and before prometheus-client is imported by them): their
    figures go to files in a fresh `<data dir>/metrics`, summed by the worker that is scraped."""
    if workers <= 1:
        return
    directory = data_dir / "metrics"
    shutil.rmtree(directory, ignore_errors=True)  # files of an earlier run would be added in
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)


def _multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class Metrics:
    """The relay's metrics in a registry of its own (one per process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = None if _multiprocess() else self.registry  # multiprocess: written to files
        self.requests = Counter(
            "aiproxy_requests",
            "Proxy requests, by how they ended (one per request-log row)",
            ("route", "platform", "model", "status", "code"),
            registry=registry,
        )
        self.duration = Histogram(
            "aiproxy_request_duration_seconds",
            "Time from the request's arrival to its last byte",
            ("route", "platform"),
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.first_byte = Histogram(
            "aiproxy_time_to_first_byte_seconds",
            "Time from the request's arrival to the first byte of a streamed answer",
            ("route", "platform"),
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.upstream = Histogram(
            "aiproxy_upstream_latency_seconds",
            "Time from sending a request upstream to its response headers, per attempt",
            ("account_type", "outcome"),
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self._in_flight_gauge = Gauge(
            "aiproxy_requests_in_flight",
            "Proxy requests being handled now",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.tokens = Counter(
            "aiproxy_tokens",
            "Tokens of served requests, by kind (input, output, cache_creation, cache_read)",
            ("platform", "model", "kind"),
            registry=registry,
        )
        self.cost = Counter(
            "aiproxy_cost_usd",
            "Billed dollars of served requests (after price rates)",
            ("platform", "model"),
            registry=registry,
        )
        self.recorder_queue = Gauge(
            "aiproxy_recorder_queue_depth",
            "Request-log rows waiting to be written",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.recorder_errors = Counter(
            "aiproxy_recorder_write_errors",
            "Failed writes of a batch of request-log rows (retried)",
            registry=registry,
        )
        self.recorder_written = Counter(
            "aiproxy_recorder_rows_written",
            "Request-log rows written",
            registry=registry,
        )
        self.refreshes = Counter(
            "aiproxy_oauth_refreshes",
            "OAuth access-token refreshes of subscription accounts, by outcome",
            ("account_type", "outcome"),
            registry=registry,
        )
        # Label lookups cost more than the increment: children are kept per label tuple, and a
        # finished request finds all of its own with one lookup.
        self._children: dict[tuple[Any, ...], Any] = {}
        self._series: dict[tuple[str, str, str, str, int], _Series] = {}
        self._upstream_tallies: dict[tuple[str, str], _Tally] = {}
        self._live: LiveFigures | None = None
        self._fold_timer: asyncio.TimerHandle | None = None
        self.in_flight = 0  # proxy requests being handled now (the gateway counts them)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # -- what the gateway reports --------------------------------------------------------------

    def request_done(self, route: str, event: UsageEvent, known_model: bool) -> None:
        """One finished request, as logged: outcome, latency and, when served, tokens and dollars."""
        platform = event.platform or "unknown"
        model = event.model if known_model else OTHER_MODEL
        key = (route, platform, model, event.status, event.status_code)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(
                self, route, platform, model, event.status, event.status_code
            )
        series.requests += 1
        series.duration.observe(event.duration_ms / 1000)
        if event.first_byte_ms and event.stream:
            series.first_byte.observe(event.first_byte_ms / 1000)
        usage = event.usage
        if usage is not None:
            tokens = series.tokens
            tokens[0] += usage.input_tokens
            tokens[1] += usage.output_tokens
            tokens[2] += usage.cache_creation_tokens
            tokens[3] += usage.cache_read_tokens
        if event.cost is not None:
            series.cost += event.cost.total

    def upstream_answered(self, account_type: str, outcome: str, seconds: float) -> None:
        key = (account_type, outcome)
        tally = self._upstream_tallies.get(key)
        if tally is None:
            tally = self._upstream_tallies[key] = _Tally(self.upstream.labels(account_type, outcome))
        tally.observe(seconds)

    # -- folding the tallies -------------------------------------------------------------------

    def fold(self) -> None:
        """Move what the tallies hold into prometheus-client's values (see the module doc)."""
        for series in self._series.values():
            series.fold()
        for tally in self._upstream_tallies.values():
            tally.fold()
        self._in_flight_gauge.set(self.in_flight)

    def start(self) -> None:
        """Fold every `FOLD_INTERVAL` seconds from now on (other workers read the folded figures)."""
        if self._fold_timer is None:
            self._fold_timer = asyncio.get_running_loop().call_later(FOLD_INTERVAL, self._fold_again)

    def stop(self) -> None:
        if self._fold_timer is not None:
            self._fold_timer.cancel()
            self._fold_timer = None
        self.fold()

    def _fold_again(self) -> None:
        self.fold()
        self._fold_timer = asyncio.get_running_loop().call_later(FOLD_INTERVAL, self._fold_again)

    def refreshed(self, account_type: str, outcome: str) -> None:
        self._child(self.refreshes, account_type, outcome).inc()

    # -- the scrape ----------------------------------------------------------------------------

    def watch(self, live: LiveFigures) -> None:
        """Figures read at scrape time (accounts, slots): from this process, whichever answers."""
        self._live = live

    async def exposition(self) -> bytes:
        """The text format, with the live figures read now."""
        self.fold()
        live = self._live
        scraped = CollectorRegistry(auto_describe=True)
        if _multiprocess():
            MultiProcessCollector(scraped)
        else:
            scraped = self.registry
        if live is None:
            return generate_latest(scraped)
        families = await live()
        snapshot = _Snapshot(families)
        scraped.register(snapshot)
        try:
            return generate_latest(scraped)
        finally:
            scraped.unregister(snapshot)


class _Tally:
    """Observations of one histogram child not yet folded into it: a count per bucket and the sum."""

    __slots__ = ("_child", "_counts", "_total")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._counts = [0] * (len(_LATENCY_BUCKETS) + 1)  # the last one: above every bound (+Inf)
        self._total = 0.0

    def observe(self, value: float) -> None:
        # prometheus-client's bucket for a value is the first whose bound is >= the value.
        self._counts[bisect_left(_LATENCY_BUCKETS, value)] += 1
        self._total += value

    def fold(self) -> None:
        counts = self._counts
        if not any(counts):
            return
        # Histogram children keep a value per bucket (not cumulative) and one for the sum: added to
        # here as `observe` would have, in one step per bucket (prometheus-client's pinned version).
        buckets = self._child._buckets
        for index, count in enumerate(counts):
            if count:
                buckets[index].inc(count)
                counts[index] = 0
        self._child._sum.inc(self._total)
        self._total = 0.0


class _Series:
    """The tallies one kind of finished request adds to (route, platform, model, outcome), and the
    metric children they are folded into."""

    __slots__ = (
        "_cost",
        "_labels",
        "_metrics",
        "_requests",
        "_tokens",
        "cost",
        "duration",
        "first_byte",
        "requests",
        "tokens",
    )

    def __init__(
        self, metrics: Metrics, route: str, platform: str, model: str, status: str, code: int
    ) -> None:
        self._metrics = metrics
        self._labels = (platform, model)
        self._requests = metrics.requests.labels(route, platform, model, status, str(code))
        # Children of one histogram are shared by every series of its route and platform.
        self.duration = _Tally(metrics._child(metrics.duration, route, platform))
        self.first_byte = _Tally(metrics._child(metrics.first_byte, route, platform))
        self._tokens: list[Any] = [None] * len(_TOKEN_KINDS)  # made on first use: no empty series
        self._cost: Any = None
        self.requests = 0
        self.tokens = [0] * len(_TOKEN_KINDS)
        self.cost = 0.0

    def fold(self) -> None:
        if self.requests:
            self._requests.inc(self.requests)
            self.requests = 0
        self.duration.fold()
        self.first_byte.fold()
        tokens = self.tokens
        for kind, count in enumerate(tokens):
            if count:
                child = self._tokens[kind]
                if child is None:
                    child = self._tokens[kind] = self._metrics.tokens.labels(
                        *self._labels, _TOKEN_KINDS[kind]
                    )
                child.inc(count)
                tokens[kind] = 0
        if self.cost:
            if self._cost is None:
                self._cost = self._metrics.cost.labels(*self._labels)
            self._cost.inc(self.cost)
            self.cost = 0.0


class _Snapshot(Collector):
    """Figures read for one scrape, handed to the registry for its text output."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)

    def describe(self) -> Iterator[Metric]:
        return iter(())


def gauge(
    name: str, documentation: str, labels: tuple[str, ...], values: dict[tuple[str, ...], float]
) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    for label_values, value in sorted(values.items()):
        family.add_metric(list(label_values), value)
    return family
