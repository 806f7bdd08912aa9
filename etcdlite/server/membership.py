"""The cluster's membership: who the members are, kept in step with the Raft log.

Mirrors etcd's membership.RaftCluster (server/etcdserver/api/membership):
members are added, removed and updated only by applying committed
ConfChange entries, so every member agrees on the list at each log index.
The list is saved to ``member/members.json`` in the data dir after each
change (etcd keeps it in its backend), so a restart knows it before the log
is replayed; IDs of removed members are remembered so they are never reused.
A member started with ``--initial-cluster-state=existing`` learns the list
(and its own ID) from the running members (etcd GetClusterFromRemotePeers).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import grpc

from proto.etcdlite_peer import peer_pb2 as peerpb
from proto.etcdlite_peer import peer_pb2_grpc

log = logging.getLogger(__name__)


class JoinError(RuntimeError):
    """A joining member could not learn the cluster from its peers."""


class MemberRemovedError(RuntimeError):
    """This member was removed from the cluster; it must not start again
    (etcd: "the member has been permanently removed from the cluster")."""


def new_member_id(peer_urls: list[str], cluster_name: str = "", *, now: Optional[float] = None) -> int:
    """etcd membership.NewMember's ID: SHA-1 over the sorted peer URLs, the
    cluster name and (for a runtime MemberAdd) the Unix time in seconds; the
    first 8 bytes big-endian."""
    b = "".join(sorted(peer_urls)) + cluster_name
    if now is not None:
        b += "%d" % int(now)
    return struct.unpack(">Q", hashlib.sha1(b.encode()).digest()[:8])[0]


@dataclass
class Member:
    """One member: ``id``, ``name`` ("" until it started, as etcd shows an
    unstarted member), ``peer_urls``."""
    id: int
    name: str
    peer_urls: list[str]

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "peerURLs": self.peer_urls}

    @classmethod
    def from_json(cls, d: dict) -> "Member":
        return cls(int(d["id"]), d.get("name", ""), list(d.get("peerURLs", [])))


@dataclass
class RaftCluster:
    """The members of cluster ``cluster_id``; ``path`` is where save() writes."""
    cluster_id: int
    members: dict[int, Member]
    path: Optional[Path] = None
    removed: set[int] = field(default_factory=set)

    @classmethod
    def load(cls, path: Path) -> Optional["RaftCluster"]:
        """The saved cluster, or None if there is no file."""
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        members = {m.id: m for m in (Member.from_json(x) for x in d["members"])}
        return cls(int(d["cluster_id"]), members, path, set(d.get("removed", [])))

    def save(self) -> None:
        """Write the list atomically (temp file, fsync, rename)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        data = json.dumps({"cluster_id": self.cluster_id, "removed": sorted(self.removed),
                           "members": [m.to_json() for m in self.sorted()]})
        with open(tmp, "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def sorted(self) -> list[Member]:
        return [self.members[i] for i in sorted(self.members)]

    def ids(self) -> list[int]:
        return sorted(self.members)

    def peer_url_owner(self, urls: list[str]) -> Optional[int]:
        """The ID of a member using any of ``urls``, or None."""
        want = set(urls)
        for m in self.members.values():
            if want & set(m.peer_urls):
                return m.id
        return None

    # -- applied from the log (idempotent: a replay after restart repeats them) --
    def add(self, m: Member) -> None:
        if m.id in self.removed:
            return
        old = self.members.get(m.id)
        if old is not None and old.name and not m.name:
            m.name = old.name
        self.members[m.id] = m

    def remove(self, member_id: int) -> None:
        self.members.pop(member_id, None)
        self.removed.add(member_id)

    def update(self, member_id: int, peer_urls: list[str]) -> None:
        m = self.members.get(member_id)
        if m is not None:
            m.peer_urls = list(peer_urls)

    def keep_only(self, voters: list[int]) -> None:
        """Align with a snapshot's ConfState: drop members it does not list."""
        for i in [i for i in self.members if i not in voters]:
            self.members.pop(i)


def fetch_from_peers(peer_urls: list[str], own_peer_urls: list[str], *,
                     timeout: float = 10.0, tls=None) -> tuple[RaftCluster, int]:
    """Ask the members at ``peer_urls`` for the cluster (etcd GetClusterFromRemotePeers)
    and find ourselves by ``own_peer_urls``. Returns (cluster, our member ID).

    Raises JoinError when no peer answers within ``timeout`` seconds or when
    we are not a member (``etcdctl member add`` must come first). ``tls`` (a
    TLSInfo, the --peer-* flags) is used for https:// peer URLs.
    """
    from etcdlite.rafthttp.transport import _target  # one place that turns URLs into targets
    deadline = time.monotonic() + timeout
    errors: list[str] = []
    while True:
        for url in peer_urls:
            try:
                channel = (grpc.secure_channel(_target(url), tls.channel_credentials())
                           if tls is not None and url.lower().startswith("https://")
                           else grpc.insecure_channel(_target(url)))
                with channel as ch:
                    resp = peer_pb2_grpc.PeerStub(ch).Members(peerpb.MembersRequest(), timeout=2.0)
            except grpc.RpcError as exc:
                errors.append(f"{url}: {exc.code().name}")
                continue
            members = {m.id: Member(m.id, m.name, list(m.peer_urls)) for m in resp.members}
            cluster = RaftCluster(resp.cluster_id, members)
            own = next((m.id for m in members.values()
                        if sorted(m.peer_urls) == sorted(own_peer_urls)), None)
            if own is None:
                raise JoinError(f"no member of cluster {resp.cluster_id:x} has peer URLs "
                                f"{','.join(own_peer_urls)}; add it first (etcdctl member add)")
            return cluster, own
        if time.monotonic() >= deadline:
            raise JoinError("could not retrieve the cluster from the peers in --initial-cluster: "
                            + "; ".join(errors[-len(peer_urls):]))
        time.sleep(0.3)
