"""The write-ahead log: entries are durable here before they are applied."""
from etcdlite.wal.wal import WAL, Entry, HardState, WALContents, WALCorruptError

__all__ = ["WAL", "Entry", "HardState", "WALContents", "WALCorruptError"]
