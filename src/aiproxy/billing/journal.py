"""Write-ahead journal of the usage recorder: what a crash cannot take away.

Every recorded event is appended, as one JSON line, to a segment file in `<data dir>/journal/`
before it waits in memory for its database batch: the lines of one event-loop iteration go out
together in one unbuffered `os.write` (O_APPEND) at the end of that iteration. The bytes are then
the kernel's: a killed process (SIGKILL, the OOM killer, a crash) loses none of them. An `fsync`
per recorder turn, run in a thread, bounds what a power failure or kernel crash can lose to about
one flush interval.

Segments are rotated every recorder turn and a segment is deleted as soon as every event in it is
in the database. Events are committed in the order they were recorded (the recorder's queue is
FIFO, a failed batch goes back to its front), so a count of outstanding events per segment, oldest
segment first, says which files are done: no scanning, no per-event bookkeeping.

Each process writes only its own segments and holds an exclusive `flock` on each while alive. The
kernel drops the locks of a dead process, so at start-up a relay replays exactly the segments it
can lock: those of processes that are gone (`orphans()`), never those of a live neighbour (another
worker, or another relay pointed at the same data dir). A new segment is created and locked under a
temporary name and only then renamed, so no one can take the lock of a file that is still being
set up.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".jsonl"
_NEW_SUFFIX = ".new"  # a segment being created: ignored by readers until renamed
# Every segment keeps its descriptor (and lock) until it is fully committed. While the database is
# down, rotation stops at this many and the newest segment grows instead: descriptors stay bounded.
MAX_OPEN_SEGMENTS = 64
_APPEND = orjson.OPT_APPEND_NEWLINE
_STALE_NEW_SECONDS = 60.0


class _Segment:
    __slots__ = ("fd", "lines", "outstanding", "path", "synced")

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.lines = 0  # appended so far
        self.synced = 0  # lines covered by the last fsync
        self.outstanding = 0  # recorded events not yet committed to the database


class Journal:
    """The segments one process owns. Not thread-safe: the event loop is its only user."""

    def __init__(self, directory: Path, *, fsync: bool = True) -> None:
        self.directory = directory
        self.fsync = fsync
        self.prefix = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._sequence = 0
        self._segments: deque[_Segment] = deque()  # oldest first; the last one takes appends
        self._current: _Segment | None = None
        self._dir_fd = -1
        self._dir_dirty = False  # a segment was created or renamed since the last directory fsync
        self._resync = False  # the last write failed part-way: start the next one on a fresh line
        self._loose = 0  # events recorded before the first segment existed (ahead of all in order)
        self.failed_writes = 0  # events kept in memory only (the write failed); reported per turn
        self._pending: list[bytes] = []  # lines of this event-loop iteration, written together
        self._write_scheduled = False

    # -- the request path ----------------------------------------------------------------------

    def append(self, event: Any) -> None:
        """Journal one event: one `orjson.dumps` now, and one `os.write` for every event recorded
        in the same event-loop iteration, at its end (under load, one system call serves many
        requests). Never raises."""
        segment = self._current
        if segment is None:  # not opened yet (or closed): the event lives in memory only
            self._loose += 1
            self.failed_writes += 1
            return
        # Counted even if the write fails: the count only decides when the file may go, and the
        # event is in the recorder's queue all the same.
        segment.outstanding += 1
        try:
            self._pending.append(orjson.dumps(event, option=_APPEND))
        except TypeError as exc:
            self.failed_writes += 1
            log.error("usage event cannot be journaled: %s", exc)
            return
        if not self._write_scheduled:
            try:
                asyncio.get_running_loop().call_soon(self.write_pending)
            except RuntimeError:  # no event loop (a script, a test): write at once
                self.write_pending()
                return
            self._write_scheduled = True

    def write_pending(self) -> None:
        """Write the lines appended since the last call, in one system call. Never raises."""
        self._write_scheduled = False
        lines, segment = self._pending, self._current
        if not lines:
            return
        self._pending = []
        if segment is None:
            self.failed_writes += len(lines)
            return
        data = lines[0] if len(lines) == 1 else b"".join(lines)
        if self._resync:
            data = b"\n" + data  # ends a torn fragment so that it spoils only itself
            self._resync = False
        try:
            written = os.write(segment.fd, data)
            while written < len(data):  # short write (disk nearly full): finish the lines
                written += os.write(segment.fd, data[written:])
        except OSError as exc:
            self._resync = True
            self.failed_writes += len(lines)
            if self.failed_writes == len(lines):
                log.error("usage journal write to %s failed: %s", segment.path, exc)
            return
        segment.lines += len(lines)

    # -- the recorder's turn -------------------------------------------------------------------

    def open(self) -> None:
        """Create the directory and the first segment (before serving, so requests never wait)."""
        if self._dir_fd < 0:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if self._current is None:
            self._open_segment()

    def rotate(self) -> None:
        """Start a new segment if the current one has lines, so committed ones can be deleted."""
        self.write_pending()  # lines counted in the current segment go to it
        current = self._current
        if current is None or not current.lines or len(self._segments) >= MAX_OPEN_SEGMENTS:
            return
        if self._open_segment() is not None:
            self.committed(0)  # the old one may already be fully committed

    async def sync(self) -> None:
        """fsync every segment written since the last call (and the directory), in a thread.

        May run while the recorder commits and deletes segments: the thread works on duplicated
        descriptors, so a segment closed meanwhile is still a valid (if pointless) fsync target.
        """
        self.write_pending()
        if self.failed_writes:
            log.error("%d usage events could not be journaled (kept in memory only)", self.failed_writes)
            self.failed_writes = 0
        if not self.fsync:
            return
        work = [(segment, segment.lines) for segment in self._segments if segment.lines != segment.synced]
        fds = [segment.fd for segment, _ in work]
        if self._dir_dirty:
            self._dir_dirty = False
            fds.append(self._dir_fd)
        if not fds:
            return
        dups: list[int] = []
        try:
            for fd in fds:
                dups.append(os.dup(fd))
        except OSError as exc:  # out of descriptors: try again next turn
            log.error("cannot fsync the usage journal: %s", exc)
            for fd in dups:
                os.close(fd)
            self._dir_dirty = True
            return
        # Lines appended while the thread runs are covered by the next call.
        if await asyncio.to_thread(_fsync_all, dups, close=True):
            for segment, lines in work:
                segment.synced = lines
        else:
            self._dir_dirty = True

    def committed(self, count: int) -> None:
        """`count` more of the oldest outstanding events are in the database: drop finished files."""
        if self._loose:
            take = min(count, self._loose)
            self._loose -= take
            count -= take
        segments = self._segments
        while segments:
            segment = segments[0]
            take = min(count, segment.outstanding)
            segment.outstanding -= take
            count -= take
            if segment.outstanding or segment is self._current:
                break
            segments.popleft()
            _remove(segment.path, segment.fd)

    def close(self) -> int:
        """Release every segment: fully committed ones are deleted, the others stay for a replay.

        Returns the number of events left in the kept segments.
        """
        self.write_pending()
        left = 0
        kept = [segment for segment in self._segments if segment.outstanding]
        if kept and self.fsync:
            _fsync_all([segment.fd for segment in kept] + ([self._dir_fd] if self._dir_fd >= 0 else []))
        for segment in self._segments:
            if segment.outstanding:
                left += segment.outstanding
                os.close(segment.fd)  # also releases the lock: the next start replays it
            else:
                _remove(segment.path, segment.fd)
        self._segments.clear()
        self._current = None
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1
        return left

    def _open_segment(self) -> _Segment | None:
        """A new locked segment that takes the appends from now on; None if it cannot be made."""
        self._sequence += 1
        name = f"{self.prefix}-{self._sequence:08d}"
        staging = self.directory / (name + _NEW_SUFFIX)
        path = self.directory / (name + SEGMENT_SUFFIX)
        fd = -1
        try:
            fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a brand-new file: nobody else has it
            os.rename(staging, path)
        except OSError as exc:
            log.error("cannot create usage journal segment %s: %s", path, exc)
            if fd >= 0:
                _remove(staging, fd)
            return None
        segment = _Segment(path, fd)
        self._segments.append(segment)
        self._current = segment
        self._dir_dirty = True
        return segment


def _fsync_all(fds: list[int], *, close: bool = False) -> bool:
    ok = True
    for fd in fds:
        try:
            os.fsync(fd)
        except OSError as exc:  # the kernel may have dropped dirty pages: say so, loudly
            log.error("fsync of the usage journal failed: %s", exc)
            ok = False
        finally:
            if close:
                os.close(fd)
    return ok


def _remove(path: Path, fd: int) -> None:
    # Unlink before closing: the lock is held until the name is gone, so no one replays it.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    os.close(fd)


# -- replay ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Orphan:
    """A segment of a process that is gone, locked by this process until `remove()`/`release()`."""

    path: Path
    fd: int
    unreadable: int = 0  # lines that were not valid JSON (a torn write)

    def records(self) -> Iterator[dict[str, Any]]:
        """The segment's JSON objects in order; a torn last line (no newline) is skipped."""
        # Read through the locked descriptor (a duplicate, at offset 0): never another file by the name.
        with os.fdopen(os.dup(self.fd), "rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    self.unreadable += 1  # the write that was cut short by the crash
                    break
                if raw == b"\n":
                    continue
                try:
                    record = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    self.unreadable += 1
                    continue
                if isinstance(record, dict):
                    yield record
                else:
                    self.unreadable += 1

    def remove(self) -> None:
        _remove(self.path, self.fd)

    def release(self) -> None:
        """Keep the file for a later attempt."""
        os.close(self.fd)


def orphans(directory: Path) -> Iterator[Orphan]:
    """Segments in `directory` whose owner is gone, each locked while the caller holds it.

    Segments of live processes (this one included: a second open file description does not
    share the lock) are skipped. Half-created segments of dead processes are removed.
    """
    if not directory.is_dir():
        return
    for path in sorted(directory.iterdir()):
        if path.suffix not in (SEGMENT_SUFFIX, _NEW_SUFFIX):
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # its owner finished it meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # a live process owns it
            continue
        if os.fstat(fd).st_nlink == 0:  # deleted by its owner between our open and our lock
            os.close(fd)
            continue
        if path.suffix == _NEW_SUFFIX:
            # Never written to (a segment is renamed before its first line). A fresh one may be a
            # live creator's between its open and its lock: leave those alone.
            if time.time() - os.fstat(fd).st_mtime > _STALE_NEW_SECONDS:
                _remove(path, fd)
            else:
                os.close(fd)
            continue
        yield Orphan(path, fd)
