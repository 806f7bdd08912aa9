"""Open watches on a follower that installs a leader's snapshot: no silent gap (etcd's unsynced path)."""
from __future__ import annotations

from etcdlite.lease.lessor import Lessor
from etcdlite.mvcc import snapshot
from etcdlite.mvcc.kvstore import KVStore
from etcdlite.mvcc.watchable_store import WatcherHub


def _put(store, key, value):
    t = store.write()
    t.put(key, value)
    t.end()


def _follower_and_leader_snapshot(n_behind: int, *, compact: int = 0):
    follower = KVStore(lessor=Lessor())
    leader = KVStore(lessor=Lessor())
    for s in (follower, leader):
        _put(s, b"a", b"0")
    for i in range(n_behind):
        _put(leader, b"a" if i % 2 else b"b", b"%d" % (i + 1))
    if compact:
        leader.compact(compact)
    return follower, snapshot.dump(leader, Lessor())


def test_watchers_replay_the_revisions_a_snapshot_skipped():
    follower, data = _follower_and_leader_snapshot(6)
    hub = WatcherHub(follower)
    got: dict[str, list[tuple[bytes, int]]] = {"range": [], "a": []}
    hub.watch(b"a", b"c", lambda w, evs, rev: got["range"].extend((e.kv.key, e.kv.mod_revision) for e in evs))
    hub.watch(b"a", b"", lambda w, evs, rev: got["a"].extend((e.kv.key, e.kv.mod_revision) for e in evs))
    snapshot.restore(follower, data)
    hub.resync()
    assert [r for _, r in got["range"]] == list(range(3, 9))
    assert got["a"] == [(b"a", r) for r in (4, 6, 8)]
    _put(follower, b"a", b"next")  # live events follow without a duplicate
    assert got["a"][-1] == (b"a", 9) and len(got["a"]) == 4


def test_watcher_behind_a_compaction_is_cancelled_with_compact_revision():
    follower, data = _follower_and_leader_snapshot(6, compact=6)
    hub = WatcherHub(follower)
    compacted: list[int] = []
    w = hub.watch(b"a", b"c", lambda *a: None)
    w.on_compacted = compacted.append
    snapshot.restore(follower, data)
    hub.resync()
    assert compacted == [6] and len(hub) == 0


class _Server:
    """What WatchStream needs of an EtcdServer: the hub and response headers."""

    def __init__(self, store):
        self.store = store
        self.hub = WatcherHub(store)

    def header(self, rev=None):
        from proto.etcdserverpb import rpc_pb2 as pb
        return pb.ResponseHeader(revision=self.store.current_rev if rev is None else rev)


async def test_watch_stream_cancels_a_watch_compacted_while_catching_up():
    from etcdlite.v3rpc.watch import WatchStream
    from proto.etcdserverpb import rpc_pb2 as pb
    follower, data = _follower_and_leader_snapshot(6, compact=6)
    server = _Server(follower)
    stream = WatchStream(server)
    stream.create(pb.WatchCreateRequest(key=b"a", range_end=b"c"))
    created = stream.queue.get_nowait()
    assert created.created and not stream.queue.qsize()
    snapshot.restore(follower, data)
    server.hub.resync()
    resp = stream.queue.get_nowait()
    assert resp.canceled and resp.compact_revision == 6 and resp.watch_id == created.watch_id
    assert resp.header.revision == 0
    assert not stream.watches and len(server.hub) == 0
