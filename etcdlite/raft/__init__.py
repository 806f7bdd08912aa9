"""etcdlite's Raft core: a pure state machine in the style of etcd-io/raft.

No I/O, no clock: the server feeds ticks and messages in through `RawNode`,
takes a `Ready` batch out, persists its hard state / entries / snapshot, sends
its messages, applies its committed entries and calls `RawNode.advance`.
"""
from etcdlite.raft.raft import (
    NONE, Config, ProposalDropped, SoftState, StateType,
)
from etcdlite.raft.read_only import ReadState
from etcdlite.raft.rawnode import RawNode, Ready, Status
from etcdlite.raft.storage import (
    ErrCompacted, ErrSnapOutOfDate, ErrUnavailable, MemoryStorage, StorageError,
)

__all__ = [
    "NONE", "Config", "ProposalDropped", "SoftState", "StateType", "ReadState",
    "RawNode", "Ready", "Status", "ErrCompacted", "ErrSnapOutOfDate",
    "ErrUnavailable", "MemoryStorage", "StorageError",
]
