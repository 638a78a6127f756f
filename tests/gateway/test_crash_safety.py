"""A relay killed with SIGKILL under load loses no usage row of a request it answered.

Every request carries its own User-Agent tag, which the request log keeps; after the kill the relay
is started again on the same data dir and database, replays its journal, and every answered tag
must have exactly one row. The same run with `AIPROXY_JOURNAL=false` is the control: it must lose
rows (what the recorder's in-memory queue held), or the test proves nothing.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from ..support import (
    ADMIN_PASSWORD,
    Api,
    RelayServer,
)
from .conftest import Upstream
from .restarts import Backend, admin_with_account, journal_segments, logged, started_relay

MODEL = "claude-opus-4-8"
CLIENTS = 6
# Kill when the recorder's queue is nearly full (a batch is written at 200): the control run then
# loses rows of requests answered well before the kill, which the journal must keep.
ANSWERED_BEFORE_KILL = 380
# The gateway records a request just after sending its last byte: a kill between the two loses
# that request whatever the recorder does (at most one per client connection). Answers complete
# longer ago than this must all have their row.
GATEWAY_WINDOW_MS = 100.0
GATEWAY_WINDOW_LOSSES = CLIENTS


@dataclass
class Setup:
    relay: RelayServer
    admin: Api
    key: str
    key_id: int


def start_relay(data_dir: Path, backend: Backend, upstream: Upstream, **env: str) -> Setup:
    relay = started_relay(data_dir, {**backend.env, **env})
    # No concurrency limits: this test is about the recorder, not about slots.
    admin = admin_with_account(relay, "crash-test", upstream.base_url)
    user = admin.ok(
        "POST",
        "/api/admin/users",
        json={"username": "loader", "password": "secret-pass", "max_concurrency": 0},
    )
    client = Api(relay.base_url)
    client.login("loader", "secret-pass")
    created = client.ok("POST", "/api/api-keys", json={"name": "load"})
    client.close()
    admin.ok("PUT", f"/api/admin/api-keys/{created['id']}", json={"rate_limit": 0})
    assert user["max_concurrency"] == 0
    return Setup(relay, admin, created["key"], created["id"])


@dataclass
class Load:
    """Client threads sending plain and streaming requests until told to stop (or the relay dies)."""

    base_url: str
    key: str
    answered: list[str] = field(default_factory=list)  # tags of answers received in full
    done_at: dict[str, float] = field(default_factory=dict)  # tag -> when its answer was complete
    busy: list[bool] = field(default_factory=lambda: [False] * CLIENTS)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def run(self, index: int) -> None:
        body = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client(base_url=self.base_url, timeout=30) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                tag = f"crash-test/{index}-{n}"
                stream = n % 2 == 0
                headers = {"x-api-key": self.key, "user-agent": tag}
                self.busy[index] = True
                try:
                    with http.stream(
                        "POST", "/claude/v1/messages", json={**body, "stream": stream}, headers=headers
                    ) as reply:
                        data = reply.read()  # to the end of the body (the last chunk, for a stream)
                except httpx.HTTPError:
                    return  # the relay is gone
                finally:
                    self.busy[index] = False
                assert reply.status_code == 200, data
                assert (b"message_stop" in data) if stream else (b'"usage"' in data), data
                self.done_at[tag] = time.monotonic()
                self.answered.append(tag)

    def start(self) -> None:
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(CLIENTS)]
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)
            assert not thread.is_alive()


@pytest.mark.parametrize("journal", [True, False], ids=["journal", "control-without-journal"])
def test_sigkill_under_load_loses_no_answered_request(
    tmp_path: Path, backend: Backend, upstream: Upstream, journal: bool
) -> None:
    # A flush interval far longer than the test: the queue holds every row of the last batch
    # (up to 199) when the relay dies.
    env = {"AIPROXY_RECORDER_FLUSH_INTERVAL": "60", "AIPROXY_JOURNAL": str(journal).lower()}
    setup = start_relay(tmp_path, backend, upstream, **env)
    relay = setup.relay
    load = Load(relay.base_url, setup.key)
    try:
        load.start()
        deadline = time.monotonic() + 120
        while len(load.answered) < ANSWERED_BEFORE_KILL:
            assert time.monotonic() < deadline, f"only {len(load.answered)} answers"
            assert all(t.is_alive() for t in load.threads), "a client thread failed"
            time.sleep(0.01)
        assert relay.process is not None
        killed_at = time.monotonic()
        relay.process.kill()  # SIGKILL: no shutdown code runs
        in_flight = sum(load.busy)
        relay.process.wait(timeout=30)
        relay.process = None
        load.join()
    finally:
        load.stop.set()
        setup.admin.close()
        relay.stop()
    answered = set(load.answered)
    assert len(answered) == len(load.answered)
    before_restart = {agent for _, agent in logged(backend, tmp_path, setup.key_id)}

    relay.start()  # same data dir, database and port: replays what the dead process journaled
    try:
        rows = logged(backend, tmp_path, setup.key_id)
        admin = Api(relay.base_url)
        admin.login("admin", ADMIN_PASSWORD)
        key = admin.ok("GET", f"/api/admin/api-keys/{setup.key_id}")
        admin.close()
    finally:
        relay.stop()
    agents = [agent for _, agent in rows]
    missing = answered - set(agents)
    # How long before the kill each missing answer was complete (negative: read after the kill).
    ages = sorted(round((killed_at - load.done_at[tag]) * 1000, 1) for tag in missing)
    old_missing = [age for age in ages if age > GATEWAY_WINDOW_MS]
    print(
        f"\n{backend.name} journal={journal}: {len(answered)} answered, {in_flight} in flight at the kill, "
        f"{len(answered - before_restart)} answered without a row before the restart, {len(missing)} after "
        f"(completed this many ms before the kill: {ages[:8]}{' ...' if len(ages) > 8 else ''})"
    )
    assert len({request_id for request_id, _ in rows}) == len(rows)  # no request counted twice
    assert len(set(agents)) == len(agents)
    assert key["request_count"] == len(rows)
    if journal:
        assert len(answered - before_restart) > GATEWAY_WINDOW_LOSSES  # the kill did hit a full queue
        assert not old_missing, (
            f"answered requests without a request log, answered ms before the kill: {ages}"
        )
        assert len(missing) <= GATEWAY_WINDOW_LOSSES, ages
        assert journal_segments(tmp_path) == []  # replayed and deleted; the clean stop left none
    else:
        # Losses the gateway window explains are at most one per client connection; more than that is
        # what the recorder's queue held. (Not judged by age: on a fast machine the whole queue can be
        # younger than the window.)
        assert len(missing) > GATEWAY_WINDOW_LOSSES, (
            f"the control lost too little to tell ({ages}): the kill missed the queue"
        )


def test_journal_stays_small_under_steady_traffic(
    tmp_path: Path, backend: Backend, upstream: Upstream
) -> None:
    setup = start_relay(tmp_path, backend, upstream)  # the default flush interval (0.25 s)
    relay = setup.relay
    load = Load(relay.base_url, setup.key)
    most_files = most_bytes = samples_with_files = 0
    try:
        load.start()
        started = time.monotonic()
        while time.monotonic() - started < 4:
            files = journal_segments(tmp_path)
            sizes = []
            for path in files:
                with contextlib.suppress(FileNotFoundError):  # deleted since the listing: committed
                    sizes.append(path.stat().st_size)
            most_files = max(most_files, len(files))
            most_bytes = max(most_bytes, sum(sizes))
            samples_with_files += bool(sizes and sum(sizes))
            time.sleep(0.05)
        load.join()
        answered = len(load.answered)
        assert all(t.is_alive() is False for t in load.threads)
    finally:
        load.stop.set()
        setup.admin.close()
        relay.stop()  # SIGTERM: drains the queue, deletes the last segments
    print(f"\n{backend.name}: {answered} requests in 4 s, at most {most_files} segments, {most_bytes} bytes")
    assert samples_with_files > 0  # the journal was in use
    # Segments live about one recorder turn: a handful at any time, whatever the traffic so far.
    assert most_files <= 6, most_files
    assert most_bytes < 2 * 1024 * 1024, most_bytes
    assert journal_segments(tmp_path) == []
    assert len(logged(backend, tmp_path, setup.key_id)) == answered
