"""The two errors a read or watch at a given revision can meet (etcd mvcc.ErrCompacted,
mvcc.ErrFutureRev); the gRPC layer maps them to OUT_OF_RANGE with etcd's messages."""


class CompactedError(Exception):
    """The requested revision is older than the compaction revision.

    ``compact_revision`` is the store's compaction revision (a watch reports it).
    """

    def __init__(self, compact_revision: int) -> None:
        super().__init__("mvcc: required revision has been compacted")
        self.compact_revision = compact_revision


class FutureRevError(Exception):
    """The requested revision is newer than the store's current revision."""

    def __init__(self) -> None:
        super().__init__("mvcc: required revision is a future revision")
