"""Reading container logs in the CRI logging format, for /containerLogs.

The runtime writes each container's output to a file, one record per line:
``<RFC3339Nano time> <stdout|stderr> <P|F> <message>``, where P marks a
partial line whose continuation follows in the next record and F a full one.
This module parses those records back into the original output, optionally
with timestamps, the last N lines only, and following the file while the
container runs. Mirrors pkg/kubelet/kuberuntime/logs/logs.go (parseCRILog,
ReadLogs with tail, since and follow).
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime
import os
from typing import AsyncIterator, Awaitable, Callable


@dataclasses.dataclass(frozen=True)
class LogRecord:
    """One parsed record: ``timestamp`` as written, ``stream``, ``partial`` (P) and ``message`` bytes."""

    timestamp: str
    stream: str
    partial: bool
    message: bytes


def parse_cri_log(line: bytes) -> LogRecord:
    """Parse one line (with or without its trailing newline). Raises ValueError
    if it is not ``<time> <stream> <tag> <message>``."""
    line = line.rstrip(b"\n")
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        raise ValueError(f"malformed CRI log line: {line[:80]!r}")
    ts, stream, tag = parts[0], parts[1], parts[2]
    if stream not in (b"stdout", b"stderr"):
        raise ValueError(f"unexpected stream type {stream[:20]!r}")
    tags = tag.split(b":")
    if tags[0] not in (b"P", b"F"):
        raise ValueError(f"unexpected log tag {tag[:20]!r}")
    msg = parts[3] if len(parts) == 4 else b""
    return LogRecord(ts.decode(), stream.decode(), tags[0] == b"P", msg)


def format_record(rec: LogRecord, *, timestamps: bool, at_line_start: bool) -> bytes:
    """The record as the user sees it: the message, a newline unless partial,
    and the timestamp prefix at the start of each output line when asked."""
    out = rec.message + (b"" if rec.partial else b"\n")
    if timestamps and at_line_start:
        out = rec.timestamp.encode() + b" " + out
    return out


def tail_start(lines: list[bytes], tail: int | None) -> int:
    """Index of the first record to show for ``tailLines=tail`` (counting full
    lines: a chain of P records plus its F record is one line)."""
    if tail is None or tail < 0:
        return 0
    if tail == 0:
        return len(lines)
    full = 0
    for i in range(len(lines) - 1, -1, -1):
        try:
            rec = parse_cri_log(lines[i])
        except ValueError:
            continue
        if not rec.partial:
            full += 1
            if full > tail:
                return i + 1
    return 0


def parse_timestamp(ts: str) -> datetime.datetime:
    """An RFC3339(Nano) time as an aware datetime (nanoseconds cut to microseconds).
    Raises ValueError for anything else."""
    ts = ts.strip()
    if ts.endswith("Z") or ts.endswith("z"):
        ts = ts[:-1] + "+00:00"
    head, sep, frac = ts.partition(".")
    if sep:
        digits = len(frac) - len(frac.lstrip("0123456789"))
        zone = frac[digits:]
        ts = f"{head}.{frac[:digits][:6].ljust(6, '0')}{zone}"
    t = datetime.datetime.fromisoformat(ts)
    if t.tzinfo is None:
        raise ValueError(f"time {ts!r} has no zone")
    return t


def render(lines: list[bytes], *, timestamps: bool, at_line_start: bool = True,
           since: datetime.datetime | None = None) -> tuple[bytes, bool]:
    """Render complete records; returns (bytes, whether the next record starts a line).
    Malformed lines are skipped, and with ``since`` records written before it
    (as upstream's ReadLogs: ``msg.timestamp.Before(opts.since)``)."""
    out = []
    for line in lines:
        try:
            rec = parse_cri_log(line)
            if since is not None and parse_timestamp(rec.timestamp) < since:
                continue
        except ValueError:
            continue
        out.append(format_record(rec, timestamps=timestamps, at_line_start=at_line_start))
        at_line_start = not rec.partial
    return b"".join(out), at_line_start


async def read_logs(path: str, *, follow: bool = False, tail: int | None = None, timestamps: bool = False,
                    still_running: Callable[[], Awaitable[bool]] | None = None,
                    poll: float = 0.2, max_bytes: int | None = None,
                    since: datetime.datetime | None = None) -> AsyncIterator[bytes]:
    """Yield the container's output from the CRI log file at ``path``.

    Without ``follow`` it ends at the end of the file; with it, it keeps
    polling for new records every ``poll`` seconds until ``still_running()``
    returns False and the file is drained (the caller's cancellation ends it
    too). ``since`` (aware datetime) drops records older than it, after the
    tail is taken, as upstream. Raises FileNotFoundError if the file does not exist.
    """
    with open(path, "rb") as f:
        data = await asyncio.to_thread(f.read)
        lines = data.splitlines(keepends=True)
        rest = b""
        if lines and not lines[-1].endswith(b"\n"):
            rest = lines.pop()  # a record still being written
        lines = lines[tail_start(lines, tail):]
        chunk, at_start = render(lines, timestamps=timestamps, since=since)
        if max_bytes is not None:
            chunk = chunk[-max_bytes:]
        if chunk:
            yield chunk
        if not follow:
            return
        idle = 0.0
        while True:
            data = await asyncio.to_thread(f.read)
            if data:
                idle = 0.0
                buf = rest + data
                lines = buf.splitlines(keepends=True)
                rest = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
                chunk, at_start = render(lines, timestamps=timestamps, at_line_start=at_start, since=since)
                if chunk:
                    yield chunk
                continue
            idle += poll
            # Check the container only now and then: the file is the fast path.
            if idle >= 1.0:
                idle = 0.0
                if still_running is not None and not await still_running():
                    data = await asyncio.to_thread(f.read)
                    if not data:
                        return
                    chunk, _ = render((rest + data).splitlines(keepends=True), timestamps=timestamps,
                                      at_line_start=at_start, since=since)
                    if chunk:
                        yield chunk
                    return
                if os.fstat(f.fileno()).st_nlink == 0:  # file removed (container removed)
                    return
            await asyncio.sleep(poll)
