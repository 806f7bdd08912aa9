"""Carrying Raft messages between member processes over gRPC.

Mirrors etcd's rafthttp.Transport: one sender per remote member with its own
queue and connection; a message for a peer that cannot be reached is dropped
and reported to Raft (``report_unreachable``), a snapshot that could not be
delivered is reported as failed (``report_snapshot``), because Raft retries on
its own and must never wait on the network. A ``Hello`` handshake checks the
cluster ID and exchanges the members' client URLs (for MemberList).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Optional
from urllib.parse import urlsplit

import grpc

from etcdlite import metrics
from etcdlite.tlsinfo import TLSInfo, is_https
from proto.etcdlite_peer import peer_pb2 as peerpb
from proto.etcdlite_peer import peer_pb2_grpc
from proto.raftpb import raft_pb2 as raftpb

log = logging.getLogger(__name__)

MAX_QUEUE = 4096
MAX_BATCH = 256
SEND_TIMEOUT = 5.0
RETRY_INTERVAL = 0.2
MAX_MESSAGE = 1 << 30
_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
            ("grpc.http2.max_ping_strikes", 0),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.so_reuseport", 0)]


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# In the refusal a removed member gets from the others (etcd: "the member has
# been permanently removed from the cluster").
REMOVED_MARK = "has been permanently removed from the cluster"


def _target(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    return f"[{host}]:{parts.port}" if ":" in host else f"{host}:{parts.port}"


class Callbacks:
    """What the transport calls on its owner (the Raft node); all on the event loop.

    ``on_message(msg)`` a received raftpb.Message; ``on_unreachable(id)``;
    ``on_snapshot_status(id, ok)``; ``lease_renew(id) -> (ttl, remaining)`` and
    ``lease_remaining(id) -> (ttl, remaining)`` answer forwarded lease calls;
    ``last_index()`` is this member's last log index and ``on_hello(id,
    last_index)`` tells what a peer reported in the handshake;
    ``members_info() -> (cluster_id, [etcdserverpb.Member])`` answers a
    joining member's Members call; ``is_removed(id)`` whether ``id`` was
    removed (its messages are refused); ``on_removed()`` this member learnt
    from a peer that it was removed.
    """

    on_message: Callable[[raftpb.Message], None]
    on_unreachable: Callable[[int], None]
    on_snapshot_status: Callable[[int, bool], None]
    lease_renew: Callable[[int], Awaitable[tuple[int, int]]]
    lease_remaining: Callable[[int], Awaitable[tuple[int, int]]]
    last_index: Callable[[], int]
    on_hello: Callable[[int, int], None]
    members_info: Callable[[], tuple]
    is_removed: Callable[[int], bool]
    on_removed: Callable[[], None]


class _Peer:
    """The sender to one remote member: a queue drained by one task."""

    def __init__(self, transport: "Transport", member_id: int, urls: list[str]) -> None:
        self.t = transport
        self.id = member_id
        self.urls = urls
        # A plain list + event, not an asyncio.Queue: the Raft loop appends a
        # Ready's messages and the sender takes them all in one swap.
        self.queue: list[raftpb.Message] = []
        self._ready = asyncio.Event()
        self._raw_stream = None
        self._prefix = b""
        self.channel: Optional[grpc.aio.Channel] = None
        self.stub: Optional[peer_pb2_grpc.PeerStub] = None
        self.active = False
        self.client_urls: list[str] = []
        self.name = ""
        self.task: Optional[asyncio.Task] = None
        self.stream = None

    def start(self) -> None:
        self.channel = self.t.dial(self.urls[0])
        self.stub = peer_pb2_grpc.PeerStub(self.channel)
        # The stream carries MessageBatch bytes we frame ourselves (see _encode).
        self._raw_stream = self.channel.stream_unary(
            "/etcdlite_peer.Peer/Stream", request_serializer=None,
            response_deserializer=peerpb.SendResponse.FromString)
        self._prefix = peerpb.MessageBatch(cluster_id=self.t.cluster_id,
                                           **{"from": self.t.member_id}).SerializeToString()
        self.task = asyncio.create_task(self._run(), name=f"peer-{self.id:x}")

    def send(self, msg: raftpb.Message) -> None:
        if not self.active or len(self.queue) >= MAX_QUEUE:
            self._dropped([msg])
            return
        self.queue.append(msg)
        self._ready.set()

    def _dropped(self, msgs: list[raftpb.Message]) -> None:
        self.t.cb.on_unreachable(self.id)
        for m in msgs:
            if m.type == raftpb.MsgSnap:
                self.t.cb.on_snapshot_status(self.id, False)

    async def _hello(self) -> bool:
        t = self.t
        try:
            resp = await self.stub.Hello(peerpb.HelloRequest(
                cluster_id=t.cluster_id, member_id=t.member_id, name=t.name,
                client_urls=t.client_urls, last_index=t.cb.last_index()), timeout=2.0)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                log.error("peer %x refused us: %s", self.id, exc.details())
                if REMOVED_MARK in (exc.details() or ""):
                    # We missed our own removal (it was committed after the
                    # others stopped talking to us): etcd's 410 Gone.
                    t.cb.on_removed()
            return False
        if resp.member_id != self.id:
            log.error("peer at %s is member %x, expected %x", self.urls[0], resp.member_id, self.id)
            return False
        self.client_urls, self.name = list(resp.client_urls), resp.name
        t.cb.on_hello(self.id, resp.last_index)
        return True

    async def _run(self) -> None:
        while True:
            if not self.active:
                if await self._hello():
                    log.info("peer %x (%s) is active", self.id, self.name)
                    self.active = True
                else:
                    await asyncio.sleep(RETRY_INTERVAL)
                    continue
            if not self.queue:
                self._ready.clear()
                await self._ready.wait()
                continue
            batch, self.queue = self.queue[:MAX_BATCH], self.queue[MAX_BATCH:]
            snaps = [m for m in batch if m.type == raftpb.MsgSnap]
            try:
                if snaps:
                    # Snapshots go as acknowledged unary calls (report_snapshot needs the outcome).
                    await self.stub.Send(self._batch(batch), timeout=SEND_TIMEOUT + 30)
                else:
                    if self.stream is not None and self.stream.done():
                        # The peer went away (or restarted): say hello again first.
                        raise grpc.aio.UsageError("stream to peer ended")
                    if self.stream is None:
                        self.stream = self._raw_stream()
                    data = self._encode(batch)
                    await self.stream.write(data)
                    metrics.PEER_SENT.labels(metrics.peer_label(self.id)).inc(len(data))
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as exc:
                code = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
                log.warning("peer %x became inactive: %s", self.id, code)
                self.active = False
                self._close_stream()
                batch.extend(self.queue)
                self.queue = []
                self._dropped(batch)
                continue
            for _ in snaps:
                self.t.cb.on_snapshot_status(self.id, True)

    def _encode(self, msgs: list[raftpb.Message]) -> bytes:
        # MessageBatch bytes without copying the messages into a new batch
        # message first: the header fields, then each message as field 3
        # (tag 0x1a, varint length, bytes), which is how protobuf encodes a
        # repeated message field.
        parts = [self._prefix]
        for m in msgs:
            data = m.SerializeToString()
            parts.append(b"\x1a" + _varint(len(data)))
            parts.append(data)
        return b"".join(parts)

    def _batch(self, msgs: list[raftpb.Message]) -> peerpb.MessageBatch:
        return peerpb.MessageBatch(cluster_id=self.t.cluster_id, messages=msgs,
                                   **{"from": self.t.member_id})

    def _close_stream(self) -> None:
        if self.stream is not None:
            self.stream.cancel()
            self.stream = None

    async def stop(self) -> None:
        self._close_stream()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.channel is not None:
            await self.channel.close()


class _Servicer(peer_pb2_grpc.PeerServicer):
    def __init__(self, transport: "Transport") -> None:
        self.t = transport

    async def _refuse_removed(self, member_id: int, context) -> None:
        if self.t.cb.is_removed(member_id):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"etcdlite: member {member_id:x} {REMOVED_MARK}")

    async def Hello(self, request, context):
        t = self.t
        if request.cluster_id != t.cluster_id:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"etcdlite: cluster ID mismatch (local {t.cluster_id:x}, "
                                f"remote {request.cluster_id:x})")
        peer = t.peers.get(request.member_id)
        if peer is None:
            await self._refuse_removed(request.member_id, context)
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"etcdlite: member {request.member_id:x} is not in this cluster")
        peer.client_urls, peer.name = list(request.client_urls), request.name
        t.cb.on_hello(request.member_id, request.last_index)
        return peerpb.HelloResponse(cluster_id=t.cluster_id, member_id=t.member_id, name=t.name,
                                    client_urls=t.client_urls, last_index=t.cb.last_index())

    async def Send(self, request, context):
        if request.cluster_id != self.t.cluster_id:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "etcdlite: cluster ID mismatch")
        await self._refuse_removed(getattr(request, "from"), context)
        for m in request.messages:
            self.t.cb.on_message(m)
        return peerpb.SendResponse()

    async def Stream(self, request_iterator, context):
        async for request in request_iterator:
            if request.cluster_id != self.t.cluster_id:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "etcdlite: cluster ID mismatch")
            await self._refuse_removed(getattr(request, "from"), context)
            metrics.PEER_RECEIVED.labels(metrics.peer_label(getattr(request, "from"))).inc(request.ByteSize())
            for m in request.messages:
                self.t.cb.on_message(m)
        return peerpb.SendResponse()

    async def Members(self, request, context):
        cluster_id, members = self.t.cb.members_info()
        return peerpb.MembersResponse(cluster_id=cluster_id, members=[
            peerpb.PeerMember(id=m.ID, name=m.name, peer_urls=m.peerURLs, client_urls=m.clientURLs)
            for m in members])

    async def LeaseRenew(self, request, context):
        ttl, remaining = await self.t.cb.lease_renew(request.ID)
        return peerpb.LeaseRenewResponse(TTL=ttl, remaining=remaining)

    async def LeaseRemaining(self, request, context):
        ttl, remaining = await self.t.cb.lease_remaining(request.ID)
        return peerpb.LeaseRenewResponse(TTL=ttl, remaining=remaining)


class Transport:
    """Peer transport of member ``member_id`` in cluster ``cluster_id``.

    ``peers`` maps the other members' IDs to their peer URLs; ``listen_urls``
    are this member's --listen-peer-urls; ``client_urls`` its advertised client
    URLs, told to peers in the handshake. ``cb`` is a Callbacks. ``tls`` (an
    etcdlite.tlsinfo.TLSInfo, etcd's --peer-* flags) serves https:// listen URLs and
    dials https:// peers with our peer certificate (mutual TLS when the other side
    sets --peer-client-cert-auth).
    """

    def __init__(self, *, member_id: int, cluster_id: int, name: str, client_urls: list[str],
                 listen_urls: list[str], peers: dict[int, list[str]], cb, tls: TLSInfo | None = None) -> None:
        self.tls = tls or TLSInfo(prefix="peer-")
        self.member_id = member_id
        self.cluster_id = cluster_id
        self.name = name
        self.client_urls = client_urls
        self.listen_urls = listen_urls
        self.cb = cb
        self.peers = {pid: _Peer(self, pid, urls) for pid, urls in peers.items()}
        self.server: Optional[grpc.aio.Server] = None
        self._stopping: set[asyncio.Future] = set()

    async def start(self) -> None:
        """Listen on the peer URLs and start one sender per peer; raises RuntimeError
        if a peer port is taken."""
        self.server = grpc.aio.server(options=_OPTIONS)
        peer_pb2_grpc.add_PeerServicer_to_server(_Servicer(self), self.server)
        for url in self.listen_urls:
            if is_https(url):
                bound = self.server.add_secure_port(_target(url), self.tls.server_credentials())
            else:
                bound = self.server.add_insecure_port(_target(url))
            if not bound:
                raise RuntimeError(f"cannot listen on peer URL {url}")
        await self.server.start()
        for p in self.peers.values():
            p.start()

    def dial(self, url: str) -> grpc.aio.Channel:
        """A channel to the peer at ``url``: TLS with our peer certificate for https://."""
        if is_https(url):
            return grpc.aio.secure_channel(_target(url), self.tls.channel_credentials(), options=_OPTIONS)
        return grpc.aio.insecure_channel(_target(url), options=_OPTIONS)

    def send(self, messages) -> None:
        """Queue raftpb.Messages to their ``to`` members (never blocks)."""
        for m in messages:
            p = self.peers.get(m.to)
            if p is not None:
                p.send(m)

    def add_peer(self, member_id: int, urls: list[str]) -> None:
        """Start sending to a new member (or to a member's new peer URLs)
        after a membership change (etcd Transport.AddPeer / UpdatePeer)."""
        old = self.peers.get(member_id)
        if old is not None:
            if sorted(old.urls) == sorted(urls):
                return
            self.remove_peer(member_id)
        p = _Peer(self, member_id, list(urls))
        self.peers[member_id] = p
        if self.server is not None:
            p.start()

    def remove_peer(self, member_id: int) -> None:
        """Stop sending to a removed member and refuse its handshakes
        (etcd Transport.RemovePeer); its sender stops in the background."""
        p = self.peers.pop(member_id, None)
        if p is not None:
            self._stopping.add(asyncio.ensure_future(p.stop()))
            self._stopping = {t for t in self._stopping if not t.done()}

    def name_of(self, member_id: int) -> str:
        """The name a peer told us in the handshake ("" until then)."""
        p = self.peers.get(member_id)
        return p.name if p else ""

    def client_urls_of(self, member_id: int) -> list[str]:
        """Client URLs a peer told us in the handshake ([] until then)."""
        p = self.peers.get(member_id)
        return p.client_urls if p else []

    def active(self, member_id: int) -> bool:
        """Whether the peer answered its last send."""
        p = self.peers.get(member_id)
        return bool(p and p.active)

    async def lease_call(self, member_id: int, lease_id: int, *, renew: bool) -> tuple[int, int]:
        """Forward a keep-alive (``renew``) or a remaining-TTL query to ``member_id``;
        returns (ttl, remaining). Raises grpc.aio.AioRpcError."""
        stub = self.peers[member_id].stub
        call = stub.LeaseRenew if renew else stub.LeaseRemaining
        resp = await call(peerpb.LeaseRenewRequest(ID=lease_id), timeout=2.0)
        return resp.TTL, resp.remaining

    async def stop(self) -> None:
        """Stop senders and the peer server."""
        for p in list(self.peers.values()):
            await p.stop()
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)
        if self.server is not None:
            await self.server.stop(grace=0.5)
