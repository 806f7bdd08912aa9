"""Saving and loading Raft snapshots as files: ``<data-dir>/member/snap/<term>-<index>.snap``.

Mirrors etcd's snap.Snapshotter: the newest readable snapshot wins on boot, a
file whose checksum does not match is renamed ``*.broken`` and skipped, and
old snapshots are pruned. File format (our own): 32-byte SHA-256 of the
payload, then a serialized raftpb.Snapshot.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Optional

from proto.raftpb import raft_pb2 as raftpb

log = logging.getLogger(__name__)
KEEP = 3


class SnapshotCorruptError(Exception):
    """A snapshot file failed its checksum."""


class Snapshotter:
    """Snapshot files in ``dir`` (created on first save)."""

    def __init__(self, dir: Path) -> None:
        self.dir = Path(dir)

    def save(self, snap: raftpb.Snapshot) -> Path:
        """Write ``snap`` durably (tmp file, fsync, rename, fsync dir); prunes old files."""
        self.dir.mkdir(parents=True, exist_ok=True)
        body = snap.SerializeToString()
        md = snap.metadata
        path = self.dir / f"{md.term:016x}-{md.index:016x}.snap"
        tmp = path.with_suffix(".snap.tmp")
        with open(tmp, "wb") as f:
            f.write(hashlib.sha256(body).digest() + body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        for old in self._names()[:-KEEP]:
            old.unlink(missing_ok=True)
        return path

    def _names(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(self.dir.glob("*.snap"))

    @staticmethod
    def read(path: Path) -> raftpb.Snapshot:
        """One snapshot file; raises SnapshotCorruptError."""
        data = path.read_bytes()
        digest, body = data[:32], data[32:]
        if len(data) < 32 or hashlib.sha256(body).digest() != digest:
            raise SnapshotCorruptError(f"snapshot {path} fails its checksum")
        return raftpb.Snapshot.FromString(body)

    def load(self) -> Optional[raftpb.Snapshot]:
        """The newest readable snapshot, or None; broken files are renamed ``.broken``."""
        for path in reversed(self._names()):
            try:
                return self.read(path)
            except (SnapshotCorruptError, Exception) as exc:  # noqa: BLE001 - any decode failure
                log.warning("skipping snapshot %s: %s", path, exc)
                path.rename(path.with_suffix(".snap.broken"))
        return None
