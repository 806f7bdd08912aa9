"""Multi-version key-value store: the state machine under etcdlite's log.

Mirrors etcd's server/storage/mvcc package: a global revision that every
write transaction bumps by one, per-key history (create_revision,
mod_revision, version), reads at past revisions until compaction, and the
watch hub that streams events in revision order.
"""
from etcdlite.mvcc.errors import CompactedError, FutureRevError
from etcdlite.mvcc.kv import DELETE, PUT, Event, KeyValue
from etcdlite.mvcc.kvstore import KVStore, RangeResult
from etcdlite.mvcc.watchable_store import Watcher, WatcherHub

__all__ = ["CompactedError", "FutureRevError", "DELETE", "PUT", "Event", "KeyValue",
           "KVStore", "RangeResult", "Watcher", "WatcherHub"]
