"""The write-ahead log: framed, checksummed records in append-only segment files.

Mirrors etcd's server/storage/wal: the log holds the member's metadata, Raft
hard states and log entries; a batch of records is written and fdatasync'ed
before any of them is acknowledged (callers batch concurrent proposals into
one save, so they share one fsync: group commit).

File format (our own; not etcd's bytes): segments named
``<seq:016x>-<first index:016x>.wal``; each record is

    u32 little-endian payload length | u32 CRC-32 of payload | payload

and a payload starts with a type byte (METADATA, ENTRY, STATE, SNAPSHOT).
A SNAPSHOT record marks that a Raft snapshot at (term, index) was saved to
``member/snap``; entries up to it may then be dropped with ``release``.

On open, a torn tail of the last segment (a short header, a record running
past the end of the file, a bad CRC on the very last record, or zero fill) is
cut off: those bytes were never acknowledged. A bad record followed by more
data is corruption and opening fails with WALCorruptError.
"""
from __future__ import annotations

import asyncio
import functools
import os
import struct
import zlib
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Optional

from etcdlite import metrics

TYPE_METADATA = 1
TYPE_ENTRY = 2
TYPE_STATE = 3
TYPE_SNAPSHOT = 4

_HEADER = struct.Struct("<II")
_ENTRY = struct.Struct("<BQQ")
_STATE = struct.Struct("<BQQQ")
_SNAPSHOT = struct.Struct("<BQQ")
# A record larger than this cannot be ours (etcd's request limit is 1.5 MiB).
MAX_RECORD = 64 << 20
SEGMENT_SIZE = 64 << 20


class Entry(NamedTuple):
    """A log entry (raftpb.Entry): ``term``, ``index`` (1-based, contiguous), opaque ``data``."""

    term: int
    index: int
    data: bytes


class HardState(NamedTuple):
    """Raft's durable state (raftpb.HardState): current ``term``, ``vote``, ``commit`` index."""

    term: int
    vote: int
    commit: int


class WALCorruptError(Exception):
    """The WAL holds a damaged record before its end; the member must not start."""


@dataclass
class WALContents:
    """What a WAL held on open: ``metadata`` bytes, the last ``hard_state``, all
    ``entries`` in index order, ``repaired`` bytes cut off a torn tail, and the
    last ``snapshot`` marker as (term, index)."""

    metadata: bytes = b""
    hard_state: HardState = HardState(0, 0, 0)
    entries: list[Entry] = field(default_factory=list)
    repaired: int = 0
    snapshot: tuple[int, int] = (0, 0)


def _frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def encode_entry(e: Entry) -> bytes:
    """One framed ENTRY record."""
    return _frame(_ENTRY.pack(TYPE_ENTRY, e.term, e.index) + e.data)


def encode_state(hs: HardState) -> bytes:
    """One framed STATE record."""
    return _frame(_STATE.pack(TYPE_STATE, hs.term, hs.vote, hs.commit))


def _segment_name(seq: int, index: int) -> str:
    return f"{seq:016x}-{index:016x}.wal"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WAL:
    """An open WAL in directory ``dir``, appending to its last segment.

    Use ``WAL.create`` for a new member, ``WAL.open`` to read back and continue.
    ``save`` is a coroutine (the write and fdatasync run in the WAL's own
    thread); ``start_save`` begins one and returns its future.
    """

    def __init__(self, dir: Path, metadata: bytes, seq: int, path: Path) -> None:
        self.dir = dir
        self.metadata = metadata
        self._seq = seq
        self._path = path
        self._fd: Optional[int] = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._size = os.fstat(self._fd).st_size
        self._closed_bytes = sum(p.stat().st_size for p in dir.glob("*.wal") if p != path)
        self._writer: Optional[_Writer] = None
        self._busy = 0  # jobs queued in or running on the WAL thread

    @staticmethod
    def exists(dir: Path) -> bool:
        """Whether ``dir`` holds a WAL."""
        return dir.is_dir() and any(dir.glob("*.wal"))

    @classmethod
    def create(cls, dir: Path, metadata: bytes) -> "WAL":
        """Create a WAL whose every segment starts with ``metadata``."""
        dir.mkdir(parents=True, exist_ok=True)
        path = dir / _segment_name(0, 0)
        with open(path, "wb") as f:
            f.write(_frame(bytes([TYPE_METADATA]) + metadata))
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(dir)
        return cls(dir, metadata, 0, path)

    @classmethod
    def open(cls, dir: Path) -> tuple["WAL", WALContents]:
        """Read every segment, cut a torn tail, and open the last one for appending.

        Raises WALCorruptError for damage before the end, a missing metadata
        record, or non-contiguous entry indexes.
        """
        segments = sorted(dir.glob("*.wal"))
        if not segments:
            raise WALCorruptError(f"no WAL segment in {dir}")
        contents = WALContents()
        for i, path in enumerate(segments):
            _read_segment(path, contents, last=i == len(segments) - 1)
        if not contents.metadata:
            raise WALCorruptError(f"WAL in {dir} has no metadata record")
        seq = int(segments[-1].name.split("-")[0], 16)
        return cls(dir, contents.metadata, seq, segments[-1]), contents

    async def save(self, entries: list[Entry], hard_state: Optional[HardState] = None, *,
                   sync: bool = True) -> None:
        """Append ``entries`` (and ``hard_state``); fdatasync before returning unless
        ``sync`` is False (Raft's must_sync: only the commit index moved)."""
        pending = self.start_save(entries, hard_state, sync=sync)
        if pending is not None:
            await pending

    def start_save(self, entries: list[Entry], hard_state: Optional[HardState] = None, *,
                   sync: bool = True, background: bool = False) -> Optional[asyncio.Future]:
        """Begin ``save`` at once and return a future to await (None when it is
        already done), so the caller can work while the disk does: the Raft
        loop applies committed entries during its fdatasync, and a leader does
        not wait for its own at all. Saves (and save_snapshot) land in call
        order: they run in one WAL thread, and an unsynced write is done
        inline only when nothing is queued there. ``background`` always uses
        the thread.

        A synced write runs in the WAL's thread so the event loop keeps serving
        meanwhile (measured: inline fdatasync halved a leader's throughput);
        an unsynced one is only a page-cache write, cheaper than the hand-off.
        """
        data = b"".join([encode_entry(e) for e in entries])
        if hard_state is not None:
            data += encode_state(hard_state)
        if not data:
            return None
        cut = entries[-1].index + 1 if entries else 0
        if (not sync and not background and not self._busy
                and (not cut or self._size + len(data) < SEGMENT_SIZE)):
            self._write(data, False)
            return None
        return self._submit(self._write_cut, data, sync, cut)

    def _submit(self, fn, *args) -> asyncio.Future:
        # One thread: writes land in call order, and no hand-off waits behind
        # unrelated to_thread work in the loop's default pool. While anything
        # is queued there, inline writes would overtake it: they queue too.
        if self._writer is None:
            if self._fd is None:
                raise OSError("WAL is closed")
            self._writer = _Writer()
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._busy += 1
        self._writer.submit(loop, functools.partial(self._finished, fut), fn, args)
        return fut

    def _finished(self, fut: asyncio.Future, result, exc: Optional[BaseException]) -> None:
        # On the loop, once per job, even if its awaiting task was cancelled.
        self._busy -= 1
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    def _write_cut(self, data: bytes, sync: bool, cut: int) -> None:
        self._write(data, sync)
        if cut and self._size >= SEGMENT_SIZE:
            self._cut(cut)

    def save_sync(self, entries: list[Entry], hard_state: Optional[HardState] = None) -> None:
        """``save`` for callers without an event loop (boot, tests)."""
        data = b"".join(encode_entry(e) for e in entries)
        if hard_state is not None:
            data += encode_state(hard_state)
        self._write(data)

    async def save_snapshot(self, term: int, index: int, *, next_index: int) -> None:
        """Record that a snapshot at (``term``, ``index``) is on disk, start a new
        segment at ``next_index`` (the first entry not yet in the WAL) and delete
        the segments holding only entries up to ``index`` (etcd ReleaseLockTo).
        Runs in the WAL thread after every save started before it."""
        await self._submit(self._save_snapshot, term, index, next_index)

    def _save_snapshot(self, term: int, index: int, next_index: int) -> None:
        # The marker opens the new segment so that releasing the old ones keeps it.
        self._cut(next_index)
        self._write(_frame(_SNAPSHOT.pack(TYPE_SNAPSHOT, term, index)))
        self.release(index)

    def release(self, index: int) -> None:
        """Delete closed segments whose entries all lie at or below ``index``."""
        segments = sorted(self.dir.glob("*.wal"))
        for seg, nxt in zip(segments, segments[1:]):
            if int(nxt.name.split("-")[1].split(".")[0], 16) > index + 1:
                break
            self._closed_bytes -= seg.stat().st_size
            seg.unlink()

    def size(self) -> int:
        """Bytes in all segments."""
        return self._closed_bytes + self._size

    def close(self) -> None:
        """Close the segment file (idempotent)."""
        if self._writer is not None:
            self._writer.stop()
            self._writer = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _write(self, data: bytes, sync: bool = True) -> None:
        if self._fd is None:
            raise OSError("WAL is closed")
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        if sync:
            t0 = time.perf_counter()
            os.fdatasync(self._fd)
            metrics.WAL_FSYNC.observe(time.perf_counter() - t0)
        metrics.WAL_WRITE_BYTES.inc(len(data))
        self._size += len(data)

    def _cut(self, next_index: int) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._closed_bytes += self._size
        self._seq += 1
        self._path = self.dir / _segment_name(self._seq, next_index)
        with open(self._path, "wb") as f:
            f.write(_frame(bytes([TYPE_METADATA]) + self.metadata))
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(self.dir)
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND)
        self._size = os.fstat(self._fd).st_size


class _Writer:
    """The WAL's own thread: runs jobs in submission order and calls each one's
    ``done(result, exc)`` on the submitting loop. What a one-thread
    ThreadPoolExecutor + run_in_executor does, without their per-job
    bookkeeping (it showed in a member's profile: one job per Ready)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        # A daemon: WAL.close() drains and joins it; a process dying without
        # close() loses only unacknowledged writes, as with a kill -9.
        self._thread = threading.Thread(target=self._run, name="wal", daemon=True)
        self._thread.start()

    def submit(self, loop: asyncio.AbstractEventLoop, done, fn, args) -> None:
        self._jobs.put((loop, done, fn, args))

    def stop(self) -> None:
        """Run what is queued, then end the thread (blocks until it has)."""
        self._jobs.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, done, fn, args = job
            result, exc = None, None
            try:
                result = fn(*args)
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting task
                exc = e
            try:
                loop.call_soon_threadsafe(done, result, exc)
            except RuntimeError:
                pass  # the loop is closed: nobody awaits it any more


def _read_segment(path: Path, out: WALContents, *, last: bool) -> None:
    data = path.read_bytes()
    size = len(data)
    pos = 0
    while pos < size:
        torn = None
        if size - pos < _HEADER.size:
            torn = "short record header"
        else:
            length, crc = _HEADER.unpack_from(data, pos)
            end = pos + _HEADER.size + length
            if length == 0:
                if data.count(0, pos) == size - pos:
                    torn = "zero-filled tail"
                else:
                    _corrupt(path, pos, "zero-length record")
            elif length > MAX_RECORD or end > size:
                torn = "record runs past the end of the file"
            else:
                payload = data[pos + _HEADER.size:end]
                if zlib.crc32(payload) != crc:
                    if end == size:
                        torn = "CRC mismatch on the last record"
                    else:
                        _corrupt(path, pos, "CRC mismatch")
        if torn is not None:
            if not last:
                _corrupt(path, pos, torn)
            _truncate(path, pos)
            out.repaired += size - pos
            return
        _decode(path, pos, payload, out)
        pos = end


def _decode(path: Path, pos: int, payload: bytes, out: WALContents) -> None:
    kind = payload[0]
    if kind == TYPE_METADATA:
        if out.metadata and out.metadata != payload[1:]:
            _corrupt(path, pos, "metadata differs from the first segment's")
        out.metadata = payload[1:]
    elif kind == TYPE_ENTRY:
        _, term, index = _ENTRY.unpack_from(payload)
        if out.entries and index != out.entries[-1].index + 1:
            if index <= out.entries[0].index:
                out.entries.clear()
            elif index <= out.entries[-1].index:
                # A later entry at an existing index replaces the tail (Raft log truncation).
                del out.entries[index - out.entries[0].index:]
            else:
                _corrupt(path, pos, f"entry index {index} follows {out.entries[-1].index}")
        out.entries.append(Entry(term, index, payload[_ENTRY.size:]))
    elif kind == TYPE_SNAPSHOT:
        _, term, index = _SNAPSHOT.unpack(payload)
        out.snapshot = (term, index)
        if out.entries and out.entries[-1].index <= index:
            # The log restarts after a snapshot received from the leader.
            out.entries.clear()
    elif kind == TYPE_STATE:
        _, term, vote, commit = _STATE.unpack(payload)
        out.hard_state = HardState(term, vote, commit)
    else:
        _corrupt(path, pos, f"unknown record type {kind}")


def _corrupt(path: Path, pos: int, reason: str) -> None:
    raise WALCorruptError(
        f"WAL segment {path} is corrupt at offset {pos}: {reason}; refusing to start "
        f"(records after it would be lost). Restore the data directory from a backup.")


def _truncate(path: Path, pos: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(pos)
        f.flush()
        os.fsync(f.fileno())
