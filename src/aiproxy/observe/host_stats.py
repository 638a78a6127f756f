"""The machine and the process a relay instance runs on: the monitor's `system` view.

Everything comes from psutil and reads `/proc` or a `statvfs` (well under a millisecond), except
CPU usage, which is a rate: busy time between two samples. The sampler keeps the previous
sample and measures since then; the first call of a process has none and waits
`FIRST_WINDOW` for one (without blocking the event loop), and calls closer together than
`MIN_WINDOW` get the last figure again rather than a noisy one from a few milliseconds.

Each worker process has its own sampler and answers for itself: CPU, memory and disk are the
host's, `process` is the worker that answered.
"""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

FIRST_WINDOW = 0.05  # seconds: the first call's sample
MIN_WINDOW = 0.25  # seconds: a shorter window gives the previous figure again


def _percent(part: float, whole: float) -> float:
    return round(part / whole * 100, 2) if whole > 0 else 0.0


def _busy_and_total() -> tuple[float, float]:
    """Host CPU seconds (all cores) spent busy, and in total, since boot.

    Idle and I/O wait are not busy; guest time is already counted in user time on Linux."""
    times = psutil.cpu_times()
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    return total - times.idle - getattr(times, "iowait", 0.0), total


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float  # monotonic seconds
    busy: float
    total: float
    process: float  # this process's CPU seconds, user + system


@dataclass(frozen=True, slots=True)
class CpuUsage:
    host: float  # % of all cores
    process: float  # % of one core
    window: float  # seconds the figures were measured over


class HostSampler:
    """Host and process figures for one process; lives on `app.state` (see api/admin/monitor.py)."""

    def __init__(self, *, data_dir: Path, workers: int) -> None:
        self._data_dir = data_dir
        self._workers = workers
        self._process = psutil.Process()
        self._last: _Sample | None = None
        self._usage: CpuUsage | None = None
        uname = os.uname()
        # What does not change while the process lives, read once.
        self._facts = {
            "hostname": socket.gethostname(),
            "os": f"{uname.sysname} {uname.release} {uname.machine}",
            "python_version": platform.python_version(),
            "python_implementation": sys.implementation.name,
        }
        self._cores = (psutil.cpu_count() or 0, psutil.cpu_count(logical=False) or 0)

    def _sample(self) -> _Sample:
        busy, total = _busy_and_total()
        cpu = self._process.cpu_times()
        return _Sample(time.monotonic(), busy, total, cpu.user + cpu.system)

    async def cpu(self) -> CpuUsage:
        if self._last is None:
            self._last = self._sample()
            await asyncio.sleep(FIRST_WINDOW)
        now = self._sample()
        last = self._last
        if self._usage is not None and now.at - last.at < MIN_WINDOW:
            return self._usage
        window = now.at - last.at
        self._usage = CpuUsage(
            host=_percent(now.busy - last.busy, now.total - last.total),
            process=_percent(now.process - last.process, window),
            window=round(window, 3),
        )
        self._last = now
        return self._usage

    def _process_view(self, cpu: CpuUsage) -> dict[str, Any]:
        proc = self._process
        with proc.oneshot():
            started = proc.create_time()
            memory = proc.memory_info()
            threads = proc.num_threads()
            fds = proc.num_fds() if hasattr(proc, "num_fds") else None
        return {
            "pid": proc.pid,
            "rss": memory.rss,
            "vms": memory.vms,
            "cpu_usage": cpu.process,
            "threads": threads,
            "open_files": fds,
            "started_at": datetime.fromtimestamp(started, UTC),
            "uptime_seconds": int(time.time() - started),
        }

    async def stats(self) -> dict[str, Any]:
        cpu = await self.cpu()
        memory = psutil.virtual_memory()
        disk = psutil.disk_usage(str(self._data_dir))
        load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
        boot = psutil.boot_time()
        return {
            "cpu_cores": self._cores[0],
            "cpu_physical_cores": self._cores[1],
            "cpu_usage": cpu.host,
            "cpu_window_seconds": cpu.window,
            "load_average": [round(value, 2) for value in load],
            # "Free" is what can be given to programs without swapping (psutil's `available`),
            # so used + free = total and the percentage matches them.
            "memory_total": memory.total,
            "memory_used": memory.total - memory.available,
            "memory_free": memory.available,
            "memory_usage": round(memory.percent, 2),
            "disk_path": str(self._data_dir),
            "disk_total": disk.total,
            "disk_used": disk.used,
            "disk_free": disk.free,
            "disk_usage": round(disk.percent, 2),
            **self._facts,
            "host_uptime_seconds": int(time.time() - boot),
            "workers": self._workers,
            "process": self._process_view(cpu),
        }
