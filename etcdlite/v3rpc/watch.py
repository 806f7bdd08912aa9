"""The Watch service: one bidi stream carries many watches.

Mirrors etcd's api/v3rpc/watch.go (serverWatchStream): the receive side
creates and cancels watchers in the hub and answers progress requests; every
response (created, events, canceled, progress) goes through one ordered
queue to the send side, so "created" always precedes that watch's events.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Optional

import grpc

from etcdlite.mvcc.errors import CompactedError
from etcdlite.mvcc.kv import DELETE, Event
from etcdlite.mvcc.watchable_store import Watcher
from etcdlite.server.apply import kv_to_pb
from etcdlite.server.etcdserver import EtcdServer
from proto.etcdserverpb import rpc_pb2 as pb
from proto.etcdserverpb import rpc_pb2_grpc
from proto.mvccpb import kv_pb2

log = logging.getLogger(__name__)

# clientv3.InvalidWatchID: the watch_id of progress responses and failed creates.
INVALID_WATCH_ID = -1
# etcd's default --experimental-watch-progress-notify-interval.
PROGRESS_NOTIFY_INTERVAL = 600.0
# Responses queued for a client that does not read; beyond this the stream ends.
MAX_PENDING_RESPONSES = 100_000


def event_to_pb(ev: Event, *, prev_kv: bool) -> kv_pb2.Event:
    """mvcc Event -> mvccpb.Event (a DELETE carries key and mod_revision only)."""
    if ev.type == DELETE:
        kv = kv_pb2.KeyValue(key=ev.kv.key, mod_revision=ev.kv.mod_revision)
    else:
        kv = kv_to_pb(ev.kv)
    out = kv_pb2.Event(type=ev.type, kv=kv)
    if prev_kv and ev.prev_kv is not None:
        out.prev_kv.CopyFrom(kv_to_pb(ev.prev_kv))
    return out


class _Watch:
    __slots__ = ("id", "watcher", "prev_kv", "progress_notify", "sent")

    def __init__(self, watch_id: int, *, prev_kv: bool, progress_notify: bool) -> None:
        self.id = watch_id
        self.watcher: Optional[Watcher] = None
        self.prev_kv = prev_kv
        self.progress_notify = progress_notify
        self.sent = False


class WatchStream:
    """The state of one Watch RPC: its watches by ID and its send queue."""

    def __init__(self, server: EtcdServer, *, progress_interval: float = PROGRESS_NOTIFY_INTERVAL) -> None:
        self.server = server
        self.queue: asyncio.Queue = asyncio.Queue()
        self.watches: dict[int, _Watch] = {}
        self._next_id = 0
        self.progress_interval = progress_interval
        self.overflowed = False

    def _send(self, resp: Optional[pb.WatchResponse]) -> None:
        if self.queue.qsize() >= MAX_PENDING_RESPONSES:
            self.overflowed = True
            resp = None
        self.queue.put_nowait(resp)

    def handle(self, req: pb.WatchRequest) -> None:
        """Process one request from the client."""
        which = req.WhichOneof("request_union")
        if which == "create_request":
            self.create(req.create_request)
        elif which == "cancel_request":
            self.cancel(req.cancel_request.watch_id)
        elif which == "progress_request":
            if self.watches:
                self._send(pb.WatchResponse(header=self.server.header(), watch_id=INVALID_WATCH_ID))

    def create(self, c: pb.WatchCreateRequest) -> None:
        """Create a watch (etcd rules: empty key = "\\0"; range_end "\\0" = >= key)."""
        key = c.key or b"\x00"
        end = c.range_end
        hdr = self.server.header()
        if end and end != b"\x00" and key >= end:
            self._send(pb.WatchResponse(header=hdr, watch_id=INVALID_WATCH_ID, created=True, canceled=True,
                                        cancel_reason="mvcc: watcher range is empty"))
            return
        if c.watch_id:
            if c.watch_id in self.watches:
                self._send(pb.WatchResponse(header=hdr, watch_id=INVALID_WATCH_ID, created=True, canceled=True,
                                            cancel_reason="mvcc: duplicate watch ID provided on the WatchStream"))
                return
            wid = c.watch_id
        else:
            while self._next_id in self.watches:
                self._next_id += 1
            wid = self._next_id
            self._next_id += 1
        w = _Watch(wid, prev_kv=c.prev_kv, progress_notify=c.progress_notify)
        self.watches[wid] = w
        self._send(pb.WatchResponse(header=hdr, watch_id=wid, created=True))

        def sink(_watcher: Watcher, events: list[Event], rev: int) -> None:
            w.sent = True
            self._send(pb.WatchResponse(
                header=self.server.header(rev), watch_id=wid,
                events=[event_to_pb(ev, prev_kv=w.prev_kv) for ev in events]))

        try:
            w.watcher = self.server.hub.watch(key, end, sink, start_rev=c.start_revision,
                                              filters=list(c.filters))
        except CompactedError as exc:
            del self.watches[wid]
            self._send_compacted(wid, exc.compact_revision)
            return

        def compacted(compact_rev: int) -> None:
            # Catching up after a snapshot jump, the history it still needed
            # was compacted: etcd cancels it with compact_revision.
            if self.watches.pop(wid, None) is not None:
                self._send_compacted(wid, compact_rev)

        w.watcher.on_compacted = compacted

    def _send_compacted(self, wid: int, compact_rev: int) -> None:
        # etcd's compaction notice carries no revision in its header.
        self._send(pb.WatchResponse(header=self.server.header(0), watch_id=wid, canceled=True,
                                    compact_revision=compact_rev))

    def cancel(self, watch_id: int) -> None:
        """Cancel a watch of this stream; unknown IDs are ignored (as etcd does)."""
        w = self.watches.pop(watch_id, None)
        if w is None:
            return
        if w.watcher is not None:
            self.server.hub.cancel(w.watcher)
        self._send(pb.WatchResponse(header=self.server.header(), watch_id=watch_id, canceled=True))

    def close(self) -> None:
        """Drop every watcher of the stream from the hub."""
        for w in self.watches.values():
            if w.watcher is not None:
                self.server.hub.cancel(w.watcher)
        self.watches.clear()

    def progress_tick(self) -> None:
        """Send a progress notification to each progress_notify watch that got no
        events since the last tick."""
        for w in self.watches.values():
            if w.progress_notify and not w.sent:
                self._send(pb.WatchResponse(header=self.server.header(), watch_id=w.id))
            w.sent = False


class WatchServicer(rpc_pb2_grpc.WatchServicer):
    """etcdserverpb.Watch over an EtcdServer's hub."""

    def __init__(self, server: EtcdServer, *, progress_interval: float = PROGRESS_NOTIFY_INTERVAL) -> None:
        self.server = server
        self.progress_interval = progress_interval

    async def Watch(self, request_iterator, context):
        """etcd Watch.Watch (bidi stream): create/cancel/progress requests in, WatchResponses out, plus periodic
        progress notifications; RESOURCE_EXHAUSTED when the client reads too slowly.
        """
        stream = WatchStream(self.server, progress_interval=self.progress_interval)

        async def recv() -> None:
            try:
                async for req in request_iterator:
                    stream.handle(req)
            except (asyncio.CancelledError, grpc.aio.AioRpcError):
                raise
            except Exception:
                log.exception("watch stream receive failed")
                stream.queue.put_nowait(None)

        async def progress() -> None:
            while True:
                await asyncio.sleep(stream.progress_interval)
                stream.progress_tick()

        tasks = [asyncio.create_task(recv()), asyncio.create_task(progress())]
        try:
            while True:
                resp = await stream.queue.get()
                if resp is None:
                    if stream.overflowed:
                        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                            "etcdlite: watch stream is not read fast enough")
                    return
                yield resp
        finally:
            for t in tasks:
                t.cancel()
            stream.close()
