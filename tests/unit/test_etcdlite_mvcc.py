"""MVCC store, watch hub and applier of etcdlite, in process (no gRPC, no disk).

Expected values are etcd 3.4's, as observed against /usr/bin/etcd: a fresh
store is at revision 1, the first write gets mod_revision 2, a delete resets
version, compaction keeps the version live at the compaction revision.
"""
import pytest

from etcdlite.lease.lessor import LeaseNotFoundError, Lessor
from etcdlite.mvcc import DELETE, PUT, CompactedError, FutureRevError, KVStore, WatcherHub
from etcdlite.server.apply import Applier
from etcdlite.v3rpc import rpctypes
from etcdlite.v3rpc.key import check_txn
from proto.etcdserverpb import rpc_pb2 as pb

C = pb.Compare


def put(store, key, value, lease=0):
    txn = store.write()
    txn.put(key, value, lease)
    return txn.end()


def delete(store, key, end=b""):
    txn = store.write()
    prev = txn.delete_range(key, end)
    txn.end()
    return prev


def test_revisions_like_etcd():
    """Fresh store at 1; each write txn bumps the revision; version counts puts since creation."""
    s = KVStore()
    assert s.current_rev == 1
    assert put(s, b"a", b"1") == 2
    assert put(s, b"a", b"2") == 3
    kv = s.get(b"a")
    assert (kv.create_revision, kv.mod_revision, kv.version, kv.value) == (2, 3, 2, b"2")
    assert [p.value for p in delete(s, b"a")] == [b"2"]
    assert s.current_rev == 4 and s.get(b"a") is None
    assert put(s, b"a", b"3") == 5
    kv = s.get(b"a")
    assert (kv.create_revision, kv.version) == (5, 1)


def test_deleting_nothing_keeps_the_revision():
    s = KVStore()
    put(s, b"a", b"1")
    assert delete(s, b"zzz") == []
    assert s.current_rev == 2


def test_history_reads_and_ranges():
    s = KVStore()
    for i, k in enumerate([b"/p/a", b"/p/b", b"/q", b"/p/c"]):
        put(s, k, b"v%d" % i)
    delete(s, b"/p/b")
    assert [kv.key for kv in s.range(b"/p/", b"/p0").kvs] == [b"/p/a", b"/p/c"]
    assert [kv.key for kv in s.range(b"/p/", b"/p0", rev=4).kvs] == [b"/p/a", b"/p/b"]
    assert [kv.key for kv in s.range(b"/p/b", b"\x00").kvs] == [b"/p/c", b"/q"]
    res = s.range(b"\x00", b"\x00", limit=2)
    assert [kv.key for kv in res.kvs] == [b"/p/a", b"/p/c"] and res.count == 3
    with pytest.raises(FutureRevError):
        s.range(b"/q", rev=100)


def test_compaction_keeps_the_live_version():
    s = KVStore()
    put(s, b"a", b"1")     # 2
    put(s, b"a", b"2")     # 3
    put(s, b"b", b"1")     # 4
    delete(s, b"b")        # 5
    put(s, b"c", b"1")     # 6
    s.compact(5)
    with pytest.raises(CompactedError):
        s.range(b"a", rev=4)
    assert s.range(b"a", rev=5).kvs[0].value == b"2"
    assert s.range(b"b", rev=5).kvs == []
    assert s.index.get(b"b") is None, "a key deleted before the compaction revision is forgotten"
    with pytest.raises(CompactedError):
        s.compact(5)
    with pytest.raises(FutureRevError):
        s.compact(7)


def test_watch_replays_history_then_streams():
    """A watcher from a past revision gets every matching event once, in revision order."""
    s = KVStore()
    hub = WatcherHub(s)
    put(s, b"/w/a", b"1")   # 2
    put(s, b"/x", b"1")     # 3
    put(s, b"/w/b", b"1")   # 4
    got = []
    hub.watch(b"/w/", b"/w0", lambda w, evs, rev: got.extend((rev, e.type, e.kv.key) for e in evs),
              start_rev=2)
    assert got == [(4, PUT, b"/w/a"), (4, PUT, b"/w/b")]
    got.clear()
    delete(s, b"/w/a")      # 5
    put(s, b"/x", b"2")     # 6
    assert got == [(5, DELETE, b"/w/a")]


def test_watch_filters_prev_kv_and_future_start():
    s = KVStore()
    hub = WatcherHub(s)
    got = []
    hub.watch(b"k", b"", lambda w, evs, rev: got.extend(evs), filters=[0])  # NOPUT
    future = []
    hub.watch(b"k", b"", lambda w, evs, rev: future.append(rev), start_rev=4)
    put(s, b"k", b"1")  # 2
    put(s, b"k", b"2")  # 3
    delete(s, b"k")     # 4
    assert [(e.type, e.prev_kv.value) for e in got] == [(DELETE, b"2")]
    assert future == [4]


def test_watch_from_compacted_revision_fails():
    s = KVStore()
    hub = WatcherHub(s)
    for i in range(4):
        put(s, b"k", b"%d" % i)
    s.compact(4)
    with pytest.raises(CompactedError) as e:
        hub.watch(b"k", b"", lambda *a: None, start_rev=3)
    assert e.value.compact_revision == 4
    got = []
    hub.watch(b"k", b"", lambda w, evs, rev: got.extend(evs), start_rev=4)
    assert [e.kv.mod_revision for e in got] == [4, 5]


def test_cancelled_watcher_gets_nothing():
    s = KVStore()
    hub = WatcherHub(s)
    got = []
    w = hub.watch(b"k", b"", lambda w, evs, rev: got.extend(evs))
    hub.cancel(w)
    put(s, b"k", b"1")
    assert got == [] and len(hub) == 0


@pytest.fixture
def applier():
    lessor = Lessor(min_ttl=2, clock=lambda: 0.0)
    store = KVStore(lessor=lessor)
    return Applier(store, lessor)


def cmp(key, target, result, **value):
    return C(key=key, target=target, result=result, **value)


@pytest.mark.parametrize("compare, ok", [
    pytest.param(cmp(b"k", C.VALUE, C.EQUAL, value=b"v2"), True, id="value-equal"),
    pytest.param(cmp(b"k", C.VALUE, C.GREATER, value=b"v1"), True, id="value-greater"),
    pytest.param(cmp(b"k", C.VERSION, C.EQUAL, version=2), True, id="version-equal"),
    pytest.param(cmp(b"k", C.VERSION, C.LESS, version=2), False, id="version-less"),
    pytest.param(cmp(b"k", C.CREATE, C.EQUAL, create_revision=2), True, id="create-equal"),
    pytest.param(cmp(b"k", C.MOD, C.NOT_EQUAL, mod_revision=3), False, id="mod-not-equal"),
    pytest.param(cmp(b"k", C.MOD, C.LESS, mod_revision=4), True, id="mod-less"),
    pytest.param(cmp(b"k", C.LEASE, C.EQUAL, lease=0), True, id="lease-equal"),
    pytest.param(cmp(b"missing", C.VERSION, C.EQUAL, version=0), True, id="absent-version-0"),
    pytest.param(cmp(b"missing", C.CREATE, C.EQUAL, create_revision=0), True, id="absent-create-0"),
    pytest.param(cmp(b"missing", C.VALUE, C.EQUAL, value=b""), False, id="absent-value-never-matches"),
    pytest.param(C(key=b"a", range_end=b"z", target=C.VERSION, result=C.GREATER, version=0), True,
                 id="range-all-greater"),
])
def test_txn_compares(applier, compare, ok):
    """Compare semantics of etcd's applyCompare, including missing keys and ranges."""
    applier.put(pb.PutRequest(key=b"k", value=b"v1"))  # 2
    applier.put(pb.PutRequest(key=b"k", value=b"v2"))  # 3
    resp = applier.txn(pb.TxnRequest(compare=[compare],
                                     success=[pb.RequestOp(request_put=pb.PutRequest(key=b"s", value=b"1"))],
                                     failure=[pb.RequestOp(request_put=pb.PutRequest(key=b"f", value=b"1"))]))
    assert resp.succeeded is ok
    assert resp.header.revision == 4
    assert applier.store.get(b"s" if ok else b"f") is not None


def test_txn_is_one_revision_and_reads_its_writes(applier):
    resp = applier.txn(pb.TxnRequest(success=[
        pb.RequestOp(request_put=pb.PutRequest(key=b"a", value=b"1")),
        pb.RequestOp(request_put=pb.PutRequest(key=b"b", value=b"1")),
        pb.RequestOp(request_range=pb.RangeRequest(key=b"a", range_end=b"c")),
        pb.RequestOp(request_txn=pb.TxnRequest(
            compare=[cmp(b"a", C.VERSION, C.EQUAL, version=0)],  # evaluated before the txn
            success=[pb.RequestOp(request_put=pb.PutRequest(key=b"n", value=b"1"))])),
    ]))
    assert resp.succeeded and resp.header.revision == 2
    assert [kv.key for kv in resp.responses[2].response_range.kvs] == [b"a", b"b"]
    assert resp.responses[3].response_txn.succeeded
    assert {applier.store.get(k).mod_revision for k in (b"a", b"b", b"n")} == {2}


def test_txn_with_missing_lease_writes_nothing(applier):
    with pytest.raises(LeaseNotFoundError):
        applier.txn(pb.TxnRequest(success=[
            pb.RequestOp(request_put=pb.PutRequest(key=b"a", value=b"1")),
            pb.RequestOp(request_put=pb.PutRequest(key=b"b", value=b"1", lease=42))]))
    assert applier.store.current_rev == 1 and applier.store.get(b"a") is None


@pytest.mark.parametrize("ops", [
    pytest.param([pb.RequestOp(request_put=pb.PutRequest(key=b"a")),
                  pb.RequestOp(request_put=pb.PutRequest(key=b"a"))], id="two-puts"),
    pytest.param([pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=b"a", range_end=b"c")),
                  pb.RequestOp(request_put=pb.PutRequest(key=b"b"))], id="put-in-deleted-range"),
])
def test_txn_duplicate_keys_rejected(ops):
    with pytest.raises(rpctypes.EtcdError) as e:
        check_txn(pb.TxnRequest(success=ops), 128)
    assert e.value is rpctypes.ErrDuplicateKey


def test_range_sort_limit_and_filters(applier):
    for k, v in [(b"a", b"3"), (b"b", b"1"), (b"c", b"2")]:
        applier.put(pb.PutRequest(key=k, value=v))
    r = applier.range(pb.RangeRequest(key=b"a", range_end=b"z", sort_target=pb.RangeRequest.VALUE,
                                      sort_order=pb.RangeRequest.DESCEND, limit=2))
    assert [kv.key for kv in r.kvs] == [b"a", b"c"] and r.more and r.count == 3
    r = applier.range(pb.RangeRequest(key=b"a", range_end=b"z", min_mod_revision=3, keys_only=True))
    assert [(kv.key, kv.value) for kv in r.kvs] == [(b"b", b""), (b"c", b"")]
    r = applier.range(pb.RangeRequest(key=b"a", range_end=b"z", count_only=True))
    assert r.count == 3 and not r.kvs


def test_put_ignore_value_and_lease(applier):
    applier.lease_grant(pb.LeaseGrantRequest(ID=7, TTL=10))
    applier.put(pb.PutRequest(key=b"k", value=b"v", lease=7))
    applier.put(pb.PutRequest(key=b"k", ignore_value=True, ignore_lease=True))
    kv = applier.store.get(b"k")
    assert (kv.value, kv.lease, kv.version) == (b"v", 7, 2)
    with pytest.raises(rpctypes.EtcdError):
        applier.put(pb.PutRequest(key=b"nope", ignore_value=True))


def test_lease_revoke_deletes_keys_in_one_revision(applier):
    applier.lease_grant(pb.LeaseGrantRequest(ID=7, TTL=1))
    assert applier.lessor.lookup(7).ttl == 2, "TTL is raised to the minimum"
    applier.put(pb.PutRequest(key=b"a", value=b"1", lease=7))
    applier.put(pb.PutRequest(key=b"b", value=b"1", lease=7))
    applier.put(pb.PutRequest(key=b"b", value=b"2"))  # detaches b
    resp = applier.lease_revoke(pb.LeaseRevokeRequest(ID=7))
    assert resp.header.revision == 5
    assert applier.store.get(b"a") is None and applier.store.get(b"b").value == b"2"
    with pytest.raises(LeaseNotFoundError):
        applier.lease_revoke(pb.LeaseRevokeRequest(ID=7))


def test_lessor_expiry_uses_injected_clock():
    now = [100.0]
    lessor = Lessor(min_ttl=2, clock=lambda: now[0])
    lessor.promote()
    lessor.grant(1, 5)
    now[0] += 4
    assert lessor.expired() == [] and lessor.renew(1) == 5
    now[0] += 5.5
    assert [le.id for le in lessor.expired()] == [1]
    with pytest.raises(LeaseNotFoundError):
        lessor.renew(1)
