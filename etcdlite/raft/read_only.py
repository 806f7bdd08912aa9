"""ReadIndex bookkeeping on the leader; mirrors etcd-io/raft read_only.go.

A linearizable read records the leader's commit index, then waits until a
quorum acknowledges a heartbeat carrying the request context (proving the
leader was still the leader when the read arrived). Requests queue in
arrival order, so one acknowledged heartbeat releases every earlier request.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from proto.raftpb import raft_pb2 as pb


@dataclass(frozen=True)
class ReadState:
    """A read that may be served once the applied index reaches ``index``
    (mirrors raft.ReadState); ``request_ctx`` is the caller's read_index ctx."""
    index: int
    request_ctx: bytes


@dataclass
class ReadIndexStatus:
    """One pending read: the request message, the commit index when it
    arrived, and the ids that acknowledged its heartbeat."""
    req: pb.Message
    index: int
    acks: set[int] = field(default_factory=set)


class ReadOnly:
    """Pending ReadIndex requests keyed by context (read_only.go readOnly)."""

    def __init__(self) -> None:
        self.pending: dict[bytes, ReadIndexStatus] = {}
        self.queue: list[bytes] = []

    def add_request(self, index: int, m: pb.Message) -> None:
        """Queue request ``m`` (ctx in m.entries[0].Data) at commit index ``index``."""
        ctx = m.entries[0].Data
        if ctx in self.pending:
            return
        self.pending[ctx] = ReadIndexStatus(req=m, index=index)
        self.queue.append(ctx)

    def recv_ack(self, node_id: int, ctx: bytes) -> set[int] | None:
        """Record a heartbeat ack from ``node_id`` for ``ctx``; returns the ack set."""
        rs = self.pending.get(ctx)
        if rs is None:
            return None
        rs.acks.add(node_id)
        return rs.acks

    def advance(self, ctx: bytes) -> list[ReadIndexStatus]:
        """Pop and return every request queued up to and including ``ctx``."""
        if ctx not in self.pending:
            return []
        i = self.queue.index(ctx) + 1
        done = [self.pending.pop(c) for c in self.queue[:i]]
        self.queue = self.queue[i:]
        return done

    def last_pending_request_ctx(self) -> bytes:
        """Context of the newest pending request, or b"" when none."""
        return self.queue[-1] if self.queue else b""
