"""Write-ahead journal of the usage recorder: what a crash cannot take away.

Every recorded event is copied, as one JSON line, into a segment file in `<data dir>/journal/`
before it waits in memory for its database batch. The segment is mapped into memory (shared, with
its disk blocks reserved and its pages made writable in advance), so the copy is the whole cost:
no system call per request, and the bytes are in the kernel's page cache the moment they are
copied. A killed process (SIGKILL, the OOM killer, a crash) loses none of them. An `fsync` per
recorder turn, run in a thread, bounds what a power failure or kernel crash can lose to about one
flush interval.

Segments are rotated every recorder turn: the old one is unmapped and cut to the bytes it holds,
and deleted as soon as every event in it is in the database. Events are committed in the order they
were recorded (the recorder's queue is FIFO, a failed batch goes back to its front), so a count of
outstanding events per segment, oldest segment first, says which files are done: no scanning, no
per-event bookkeeping.

Each process writes only its own segments and holds an exclusive `flock` on each while alive. The
kernel drops the locks of a dead process, so at start-up a relay replays exactly the segments it
can lock: those of processes that are gone (`orphans()`), never those of a live neighbour (another
worker, or another relay pointed at the same data dir). A new segment is created and locked under a
temporary name and only then renamed, so no one can take the lock of a file that is still being
set up. The segment of a process that died still has its reserved tail of zero bytes: a reader
stops there.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import mmap
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
# A segment reserves room for about this much to start with, then twice what the previous one
# held (a turn's worth of traffic), at most _MAX_GROWTH; a segment that fills up doubles, by at
# most _MAX_GROWTH a step (the new pages are faulted in on the event loop: about 0.4 ms per MiB).
_FIRST_SIZE = 256 * 1024
_MAX_GROWTH = 8 * 1024 * 1024
# madvise(MADV_POPULATE_WRITE), Linux 5.14+: the pages are faulted in writable when a segment is
# made, by the recorder's turn, instead of one page fault per few requests on the request path.
_MADV_POPULATE_WRITE = 23


def _page_multiple(size: int) -> int:
    return -(-size // mmap.PAGESIZE) * mmap.PAGESIZE


class _Segment:
    __slots__ = ("fd", "lines", "map", "outstanding", "path", "size", "synced", "used")

    def __init__(self, path: Path, fd: int, mapped: mmap.mmap, size: int) -> None:
        self.path = path
        self.fd = fd
        self.map: mmap.mmap | None = mapped  # None once sealed
        self.size = size  # bytes reserved and mapped
        self.used = 0  # bytes of lines written
        self.lines = 0  # appended so far
        self.synced = 0  # lines covered by the last fsync
        self.outstanding = 0  # recorded events not yet committed to the database

    def seal(self) -> None:
        """No more lines: unmap, and cut the file to the lines it holds (its pages stay dirty in
        the kernel's cache until written back, or until the fsync). Idempotent."""
        if self.map is None:
            return
        self.map.close()
        self.map = None
        try:
            os.ftruncate(self.fd, self.used)
        except OSError as exc:  # harmless: readers stop at the zero tail
            log.warning("cannot trim usage journal segment %s: %s", self.path, exc)


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
        self._loose = 0  # events recorded before the first segment existed (ahead of all in order)
        self.failed_writes = 0  # events kept in memory only (the write failed); reported per turn

    # -- the request path ----------------------------------------------------------------------

    def append(self, event: Any) -> None:
        """Journal one event: one `orjson.dumps` and a copy into the mapped segment. Never raises."""
        segment = self._current
        if segment is None:  # not opened yet (or closed): the event lives in memory only
            self._loose += 1
            self.failed_writes += 1
            return
        # Counted even if the write fails: the count only decides when the file may go, and the
        # event is in the recorder's queue all the same.
        segment.outstanding += 1
        try:
            line = orjson.dumps(event, option=_APPEND)
        except TypeError as exc:
            self.failed_writes += 1
            log.error("usage event cannot be journaled: %s", exc)
            return
        start = segment.used
        end = start + len(line)
        if end > segment.size and not self._grow(segment, end):
            self.failed_writes += 1
            return
        segment.map[start:end] = line  # type: ignore[index]
        segment.used = end
        segment.lines += 1

    def _grow(self, segment: _Segment, needed: int) -> bool:
        """Room for `needed` bytes in the current segment (a burst within one turn, or a database
        outage that stopped rotation). False, and the event stays in memory only, if the disk
        cannot give it."""
        mapped = segment.map
        if mapped is None:
            return False
        size = _page_multiple(needed + min(segment.size, _MAX_GROWTH))
        try:
            os.posix_fallocate(segment.fd, segment.size, size - segment.size)
            mapped.resize(size)
        except (OSError, ValueError) as exc:
            if not self.failed_writes:
                log.error("usage journal segment %s cannot grow: %s", segment.path, exc)
            return False
        _populate(mapped, segment.size, size - segment.size)
        segment.size = size
        return True

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
        current = self._current
        if current is None or not current.lines or len(self._segments) >= MAX_OPEN_SEGMENTS:
            return
        if self._open_segment(size=min(current.used * 2, _MAX_GROWTH)) is not None:
            current.seal()
            self.committed(0)  # the old one may already be fully committed

    async def sync(self) -> None:
        """fsync every segment written since the last call (and the directory), in a thread.

        May run while the recorder commits and deletes segments: the thread works on duplicated
        descriptors, so a segment closed meanwhile is still a valid (if pointless) fsync target.
        """
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
            segment.seal()  # already, unless it never was the current one
            _remove(segment.path, segment.fd)

    def close(self) -> int:
        """Release every segment: fully committed ones are deleted, the others stay for a replay.

        Returns the number of events left in the kept segments.
        """
        for segment in self._segments:
            segment.seal()
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

    def _open_segment(self, size: int = 0) -> _Segment | None:
        """A new locked segment that takes the appends from now on; None if it cannot be made."""
        self._sequence += 1
        name = f"{self.prefix}-{self._sequence:08d}"
        staging = self.directory / (name + _NEW_SUFFIX)
        path = self.directory / (name + SEGMENT_SUFFIX)
        size = _page_multiple(max(size, _FIRST_SIZE))
        fd = -1
        mapped = None
        try:
            fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a brand-new file: nobody else has it
            # The blocks are reserved now: a full disk fails here, never later in a page fault
            # (which would kill the process with SIGBUS).
            os.posix_fallocate(fd, 0, size)
            mapped = mmap.mmap(fd, size)
            os.rename(staging, path)
        except (OSError, ValueError) as exc:
            log.error("cannot create usage journal segment %s: %s", path, exc)
            if mapped is not None:
                mapped.close()
            if fd >= 0:
                _remove(staging, fd)
            return None
        _populate(mapped, 0, size)
        segment = _Segment(path, fd, mapped, size)
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


def _populate(mapped: mmap.mmap, start: int, length: int) -> None:
    with contextlib.suppress(OSError):  # an older kernel: the pages fault in as they are written
        mapped.madvise(_MADV_POPULATE_WRITE, start, length)


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
        """The segment's JSON objects in order; a torn last line is skipped.

        A segment whose process died holds its reserved tail of zero bytes after the last line.
        """
        # Read through the locked descriptor (a duplicate, at offset 0): never another file by the name.
        with os.fdopen(os.dup(self.fd), "rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    if raw.strip(b"\0"):
                        self.unreadable += 1  # the copy that was cut short by the crash
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
