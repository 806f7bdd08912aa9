"""Raft snapshot files of a member (etcd server/etcdserver/api/snap)."""
from etcdlite.snap.snapshotter import SnapshotCorruptError, Snapshotter

__all__ = ["Snapshotter", "SnapshotCorruptError"]
