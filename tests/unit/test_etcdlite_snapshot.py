"""Snapshots of an etcdlite member: MVCC dump/restore, snapshot files, WAL
snapshot markers and segment release, and the bbolt file of etcdctl snapshot."""
import hashlib
import json
import os
import shutil
import subprocess

import pytest

from etcdlite.lease.lessor import Lessor
from etcdlite.mvcc import boltdb, snapshot
from etcdlite.mvcc.kvstore import KVStore
from etcdlite.snap.snapshotter import SnapshotCorruptError, Snapshotter
from etcdlite.wal.wal import WAL, Entry, HardState
from proto.raftpb import raft_pb2 as raftpb


def _store(n=5):
    lessor = Lessor()
    store = KVStore(lessor=lessor)
    lessor.grant(7, 30)
    for i in range(n):
        t = store.write()
        t.put(b"k%03d" % i, b"v%d" % i, lease=7 if i == 2 else 0)
        t.end()
    t = store.write()
    t.delete_range(b"k001")
    t.end()
    return store, lessor


def test_mvcc_dump_restore_round_trip():
    store, lessor = _store()
    data = snapshot.dump(store, lessor)
    l2 = Lessor()
    s2 = KVStore(lessor=l2)
    snapshot.restore(s2, data, l2)
    assert s2.range(b"\0", b"\0").kvs == store.range(b"\0", b"\0").kvs
    assert s2.current_rev == store.current_rev
    assert s2.events_since(2) == store.events_since(2)
    assert l2.leases[7].keys == {b"k002"}
    with pytest.raises(snapshot.SnapshotFormatError):
        snapshot.restore(s2, b"junk" * 10)


def test_snapshotter_newest_wins_and_corrupt_is_skipped(tmp_path):
    ss = Snapshotter(tmp_path)
    for idx in (10, 20):
        ss.save(raftpb.Snapshot(data=b"d%d" % idx, metadata=raftpb.SnapshotMetadata(index=idx, term=1)))
    newest = sorted(tmp_path.glob("*.snap"))[-1]
    raw = bytearray(newest.read_bytes())
    raw[-1] ^= 0xFF
    newest.write_bytes(bytes(raw))
    with pytest.raises(SnapshotCorruptError):
        Snapshotter.read(newest)
    assert ss.load().metadata.index == 10
    assert list(tmp_path.glob("*.broken"))


async def test_wal_snapshot_marker_releases_old_segments(tmp_path):
    wal = WAL.create(tmp_path, b"meta")
    await wal.save([Entry(1, i, b"x") for i in range(1, 11)], HardState(1, 1, 10))
    await wal.save_snapshot(1, 10, next_index=11)
    await wal.save([Entry(1, 11, b"y")], HardState(1, 1, 11))
    wal.close()
    assert len(list(tmp_path.glob("*.wal"))) == 1      # the segment with 1..10 is gone
    _, contents = WAL.open(tmp_path)
    assert contents.snapshot == (1, 10)
    assert [e.index for e in contents.entries] == [11]


async def test_wal_log_restarts_after_a_received_snapshot(tmp_path):
    wal = WAL.create(tmp_path, b"meta")
    await wal.save([Entry(1, i, b"x") for i in range(1, 4)])
    await wal.save_snapshot(2, 100, next_index=101)
    await wal.save([Entry(2, 101, b"z")])
    wal.close()
    _, contents = WAL.open(tmp_path)
    assert [e.index for e in contents.entries] == [101]


@pytest.mark.skipif(not shutil.which("etcdctl"), reason="etcdctl 3.4 not installed")
@pytest.mark.parametrize("n,size", [(3, 10), (2000, 300)])
def test_bbolt_file_is_accepted_by_etcdctl_snapshot_status(tmp_path, n, size):
    store, lessor = _store(n)
    data = boltdb.write_db(boltdb.buckets_of(store, lessor))
    assert len(data) % 4096 == 0
    path = tmp_path / "s.db"
    path.write_bytes(data + hashlib.sha256(data).digest())
    r = subprocess.run(["etcdctl", "snapshot", "status", str(path), "-w", "json"], capture_output=True,
                       text=True, timeout=30, env=dict(os.environ, ETCDCTL_API="3"))
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["revision"] == store.current_rev
    assert st["totalKey"] == n + 1 + 1 + 2      # versions + tombstone + lease + meta keys


def test_bolt_reader_reads_back_what_the_writer_wrote():
    """read_db (kubeling cluster restore's reader) inverts write_db, across leaf and branch pages."""
    from etcdlite.mvcc import boltdb

    buckets = {b"key": [(boltdb.rev_bytes(i, 0), b"v%d" % i * 40) for i in range(1, 2500)],
               b"lease": [], b"meta": [(b"consistent_index", b"\0" * 8)]}
    got = boltdb.read_db(boltdb.write_db(buckets))
    assert got == buckets
    import pytest
    with pytest.raises(boltdb.BoltFormatError):
        boltdb.read_db(b"\0" * 9000)
