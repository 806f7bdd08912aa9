"""Container logs in the CRI log format, copied from Docker's log stream.

The kubelet reads container logs from the file it named in ContainerConfig
(sandbox log_directory + log_path) in the CRI format, one line per entry:
``<RFC3339Nano timestamp> <stdout|stderr> <P|F> <message>``. Docker keeps its own
copy (json-file driver); one follower thread per started container streams
both outputs (Docker's multiplexed frames, each tagged stdout or stderr) with
Docker's timestamps and appends to the CRI file. After a shim
restart the follower resumes from the last timestamp already in the file, so
no line is written twice. Mirrors what dockershim's docker_container.go did
with its log symlinks and what cri-o's conmon does, in a simpler form.

Followers are plain daemon threads (each blocks on an HTTP stream for the
container's lifetime), not tasks of the shim's bounded thread pool.
"""
from __future__ import annotations

import logging
import os
import struct
import threading

import docker

from kubelet.dockershim.helpers import parse_docker_time

log = logging.getLogger("dockershim.logs")

STREAMS = ("stdout", "stderr")
TAIL_SCAN_BYTES = 256 * 1024


def last_timestamps(path: str) -> dict[str, int]:
    """Last timestamp (ns) per stream found in the tail of an existing CRI log file."""
    out = {s: 0 for s in STREAMS}
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - TAIL_SCAN_BYTES))
            tail = f.read().decode(errors="replace").splitlines()
    except OSError:
        return out
    for line in tail:
        parts = line.split(" ", 3)
        if len(parts) >= 3 and parts[1] in STREAMS:
            try:
                out[parts[1]] = max(out[parts[1]], parse_docker_time(parts[0]))
            except ValueError:
                continue
    return out


def format_line(timestamp: str, stream: str, message: str) -> str:
    """One CRI log line (full, not partial)."""
    return f"{timestamp} {stream} F {message}\n"


class LogManager:
    """Starts and tracks the log followers of the shim's containers."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._followers: dict[str, list[threading.Thread]] = {}

    def follow(self, container_id: str, path: str, *, tty: bool | None = None) -> None:
        """Copy the container's logs to ``path`` until it exits; no-op if already following.
        ``tty``: whether the container has a terminal (one raw stream, all stdout); None asks Docker."""
        if not path:
            return
        with self._lock:
            if any(t.is_alive() for t in self._followers.get(container_id, [])):
                return
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            since = last_timestamps(path)
            file_lock = threading.Lock()
            if tty is False:
                # One demultiplexed stream: half the requests and no inspect (the SDK's logs() asks
                # Docker whether the container has a tty, once per call).
                threads = [threading.Thread(target=self._copy_multiplexed, args=(container_id, path, since),
                                            name=f"logs-{container_id[:12]}", daemon=True)]
            else:
                threads = [threading.Thread(target=self._copy, args=(container_id, path, s, since[s], file_lock),
                                            name=f"logs-{container_id[:12]}-{s}", daemon=True) for s in STREAMS]
            self._followers[container_id] = threads
        for t in threads:
            t.start()

    def forget(self, container_id: str) -> None:
        """Stop tracking the log follower of ``container_id`` (on removal); unknown ids are ignored."""
        with self._lock:
            self._followers.pop(container_id, None)

    def _copy_multiplexed(self, container_id: str, path: str, since: dict[str, int]) -> None:
        """Follow both streams of a container without a tty: Docker's frames are an 8-byte header
        (stream 1 = stdout, 2 = stderr, 3 zero bytes, big-endian payload length) and the payload."""
        api = self.client.api
        after = min(since.values())
        params = {"stdout": 1, "stderr": 1, "follow": 1, "timestamps": 1, "tail": "all"}
        if after:
            params["since"] = int(after // 1_000_000_000)
        file_lock = threading.Lock()
        pending = {s: b"" for s in STREAMS}
        try:
            res = api._get(api._url("/containers/{0}/logs", container_id), params=params, stream=True)
            api._raise_for_status(res)
            while True:
                header = res.raw.read(8)
                if len(header) < 8:
                    break
                kind, length = struct.unpack(">BxxxL", header)
                data = res.raw.read(length) if length else b""
                if length and not data:
                    break
                stream = "stderr" if kind == 2 else "stdout"
                pending[stream] += data
                *lines, pending[stream] = pending[stream].split(b"\n")
                self._write(path, stream, lines, since[stream], file_lock)
            for stream, rest in pending.items():
                if rest:
                    self._write(path, stream, [rest], since[stream], file_lock)
        except docker.errors.NotFound:
            pass
        except Exception as e:  # a log follower must never take the shim down
            log.warning("log follower %s stopped: %s", container_id[:12], e)

    def _copy(self, container_id: str, path: str, stream: str, after_ns: int, file_lock: threading.Lock) -> None:
        try:
            chunks = self.client.api.logs(container_id, stdout=stream == "stdout", stderr=stream == "stderr",
                                          stream=True, follow=True, timestamps=True,
                                          since=int(after_ns // 1_000_000_000) if after_ns else None)
            pending = b""
            for chunk in chunks:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                self._write(path, stream, lines, after_ns, file_lock)
            if pending:
                self._write(path, stream, [pending], after_ns, file_lock)
        except docker.errors.NotFound:
            pass
        except Exception as e:  # a log follower must never take the shim down
            log.warning("log follower %s/%s stopped: %s", container_id[:12], stream, e)

    @staticmethod
    def _write(path: str, stream: str, lines: list[bytes], after_ns: int, file_lock: threading.Lock) -> None:
        out = []
        for raw in lines:
            ts, _, msg = raw.decode(errors="replace").partition(" ")
            try:
                if parse_docker_time(ts) <= after_ns:
                    continue  # already copied before a shim restart
            except ValueError:
                continue
            out.append(format_line(ts, stream, msg))
        if out:
            with file_lock, open(path, "a") as f:
                f.writelines(out)
