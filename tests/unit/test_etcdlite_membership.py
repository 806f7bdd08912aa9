"""etcdlite's member list (etcdlite/server/membership.py) and the WAL form of
conf change entries (etcdlite/server/raftnode.py)."""
from __future__ import annotations

from etcdlite.config import member_id
from etcdlite.server.membership import Member, RaftCluster, new_member_id
from etcdlite.server.raftnode import entry_from_wal, wal_data
from proto.etcdserverpb import raft_internal_pb2 as internalpb
from proto.raftpb import raft_pb2 as raftpb


def test_new_member_id_is_etcds_hash():
    urls = ["http://127.0.0.1:2380"]
    # Without a time and with the token it is the --initial-cluster ID.
    assert new_member_id(urls, "etcd-cluster") == member_id(urls, "etcd-cluster")
    # MemberAdd mixes in the Unix second: re-adding the same URLs later gives a new ID.
    assert new_member_id(urls, now=1000.2) == new_member_id(urls, now=1000.9)
    assert new_member_id(urls, now=1000) != new_member_id(urls, now=1001)
    assert new_member_id(["http://b:1", "http://a:1"]) == new_member_id(["http://a:1", "http://b:1"])


def test_cluster_saves_and_replays_idempotently(tmp_path):
    path = tmp_path / "member" / "members.json"
    c = RaftCluster(7, {1: Member(1, "n1", ["http://a:1"]), 2: Member(2, "n2", ["http://b:1"])}, path)
    c.add(Member(3, "", ["http://c:1"]))
    c.remove(2)
    c.update(3, ["http://c:2"])
    c.save()
    back = RaftCluster.load(path)
    assert back.cluster_id == 7 and back.ids() == [1, 3] and back.removed == {2}
    assert back.members[3].peer_urls == ["http://c:2"]
    # A restart replays the log from an older point: the same changes again.
    back.add(Member(2, "n2", ["http://b:1"]))   # removed IDs never come back
    back.remove(2)
    back.add(Member(3, "", ["http://c:2"]))     # a known name is kept
    assert back.ids() == [1, 3]
    assert back.peer_url_owner(["http://c:2"]) == 3 and back.peer_url_owner(["http://x:1"]) is None
    assert RaftCluster.load(tmp_path / "nothing.json") is None


def test_conf_change_entries_survive_the_wal_form():
    cc = raftpb.ConfChange(type=raftpb.ConfChangeRemoveNode, node_id=5, id=9)
    e = raftpb.Entry(Term=2, Index=3, Type=raftpb.EntryConfChange, Data=cc.SerializeToString())
    back = entry_from_wal(2, 3, wal_data(e))
    assert back == e
    normal = raftpb.Entry(Term=2, Index=4, Data=internalpb.InternalRaftRequest(ID=1).SerializeToString())
    assert entry_from_wal(2, 4, wal_data(normal)) == normal
    assert entry_from_wal(2, 5, b"") == raftpb.Entry(Term=2, Index=5)
