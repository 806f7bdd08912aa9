"""EtcdServer in process over a real WAL in a temp dir: proposals, group commit,
replay after restart, lease expiry through the log."""
import asyncio

import pytest

from etcdlite import config
from etcdlite.server.etcdserver import EtcdServer
from etcdlite.v3rpc import rpctypes
from proto.etcdserverpb import rpc_pb2 as pb


def cfg(tmp_path):
    return config.parse(["--name", "m1", "--data-dir", str(tmp_path / "data"),
                         "--listen-client-urls", "http://127.0.0.1:0",
                         "--initial-cluster", "m1=http://127.0.0.1:2380"])


async def test_concurrent_puts_share_fsyncs(tmp_path):
    """Group commit: 50 concurrent puts need far fewer than 50 WAL saves."""
    s = EtcdServer(cfg(tmp_path))
    await s.start()
    saves = 0
    real_save = s.wal.save

    async def counting_save(*a, **kw):
        nonlocal saves
        saves += 1
        await real_save(*a, **kw)

    s.wal.save = counting_save
    try:
        resps = await asyncio.gather(*(s.put(pb.PutRequest(key=b"k%d" % i, value=b"v")) for i in range(50)))
        assert sorted(r.header.revision for r in resps) == list(range(2, 52))
        assert saves < 25
    finally:
        await s.stop()


async def test_restart_replays_same_revisions(tmp_path):
    s = EtcdServer(cfg(tmp_path))
    await s.start()
    lease = await s.lease_grant(pb.LeaseGrantRequest(TTL=60))
    for i in range(10):
        await s.put(pb.PutRequest(key=b"k%d" % i, value=b"v%d" % i, lease=lease.ID if i == 3 else 0))
    await s.delete_range(pb.DeleteRangeRequest(key=b"k5"))
    await s.compact(pb.CompactionRequest(revision=4))
    before = await s.range(pb.RangeRequest(key=b"\x00", range_end=b"\x00"))
    term = s.node.term
    await s.stop()

    s2 = EtcdServer(cfg(tmp_path))
    await s2.start()
    try:
        after = await s2.range(pb.RangeRequest(key=b"\x00", range_end=b"\x00"))
        assert list(after.kvs) == list(before.kvs)
        assert after.header.revision == before.header.revision == 12
        assert s2.store.compact_rev == 4
        assert s2.lessor.lookup(lease.ID).keys == {b"k3"}
        assert s2.node.term == term + 1
        assert (await s2.put(pb.PutRequest(key=b"new", value=b"x"))).header.revision == 13
    finally:
        await s2.stop()


async def test_expired_lease_is_revoked_through_the_log(tmp_path):
    now = [1000.0]
    s = EtcdServer(cfg(tmp_path), clock=lambda: now[0])
    await s.start()
    try:
        lease = await s.lease_grant(pb.LeaseGrantRequest(TTL=5))
        await s.put(pb.PutRequest(key=b"owned", value=b"v", lease=lease.ID))
        now[0] += 6
        for _ in range(40):
            if s.store.get(b"owned") is None:
                break
            await asyncio.sleep(0.1)
        assert s.store.get(b"owned") is None
        assert s.lessor.lookup(lease.ID) is None
        assert await s.lease_renew(lease.ID) == 0
    finally:
        await s.stop()


async def test_writes_after_stop_fail_cleanly(tmp_path):
    s = EtcdServer(cfg(tmp_path))
    await s.start()
    await s.stop()
    with pytest.raises(rpctypes.EtcdError) as e:
        await s.put(pb.PutRequest(key=b"k", value=b"v"))
    assert e.value is rpctypes.ErrStopped


async def test_snapshot_and_restart_from_it(tmp_path):
    """Every --snapshot-count entries a snapshot file is written and old WAL
    segments released; a restart rebuilds the same state from snapshot + WAL."""
    c = cfg(tmp_path)
    c.snapshot_count = 20
    s = EtcdServer(c)
    await s.start()
    for i in range(55):
        await s.put(pb.PutRequest(key=b"k%02d" % i, value=b"v%d" % i))
    before = await s.range(pb.RangeRequest(key=b"\x00", range_end=b"\x00"))
    for _ in range(100):  # snapshots are saved in the background
        if s.node.snap_index >= 40:
            break
        await asyncio.sleep(0.05)
    assert s.node.snap_index >= 40
    await s.stop()
    assert list((tmp_path / "data" / "member" / "snap").glob("*.snap"))
    s2 = EtcdServer(c)
    await s2.start()
    try:
        after = await s2.range(pb.RangeRequest(key=b"\x00", range_end=b"\x00"))
        assert list(after.kvs) == list(before.kvs)
        assert (await s2.put(pb.PutRequest(key=b"z", value=b"x"))).header.revision == 57
    finally:
        await s2.stop()


async def test_lone_member_commits_its_new_term_entry_without_a_write(tmp_path):
    """A single member elects itself with a new term in one Ready (written
    synchronously); its own copy of the new term's entry must still count, or
    nothing in the log would commit (and entries left uncommitted at a
    restart would stay unapplied) until the next client write."""
    s = EtcdServer(cfg(tmp_path))
    await s.start()
    try:
        for _ in range(100):
            n = s.node
            if n.last_index >= 1 and n.commit_index == n.applied_index == n.last_index:
                break
            await asyncio.sleep(0.02)
        assert s.node.last_index >= 1
        assert s.node.commit_index == s.node.applied_index == s.node.last_index
        resp = await s.range(pb.RangeRequest(key=b"health"))
        assert resp.count == 0
    finally:
        await s.stop()
