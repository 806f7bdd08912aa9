"""The apiserver's only way to the store: the etcd v3 gRPC API over grpc.aio.

Mirrors k8s.io/apiserver's ``pkg/storage/etcd3/store.go``: values are the
object JSON under ``/registry/...`` keys, an object's resourceVersion is its
key's ``mod_revision`` (never stored inside the value), a list's
resourceVersion is the store revision of the Range. Writes are single Txns:

- create: ``if create_revision(key) == 0 then put``
- update: ``if mod_revision(key) == rv then put``
- delete: ``if mod_revision(key) == rv then delete``

Extra compares and ops (e.g. the service ClusterIP reservation key) ride in
the same Txn, so they commit or fail together. Works with etcdlite and with
a real etcd 3.4 alike.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import AsyncIterator

import grpc

from apiserver.storage import codec
from apiserver.storage.encryption import StorageTransformers, TransformError
from proto.etcdserverpb import rpc_pb2 as pb
from proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from proto.mvccpb import kv_pb2

log = logging.getLogger(__name__)


class StorageError(Exception):
    """Base of storage errors; ``key`` is the etcd key involved."""

    def __init__(self, key: str, message: str = ""):
        self.key = key
        super().__init__(message or key)


class KeyExists(StorageError):
    """A create found the key already present (-> 409 AlreadyExists)."""


class KeyNotFound(StorageError):
    """The key is absent (-> 404 NotFound)."""


class Conflict(StorageError):
    """The key's mod_revision differs from the expected one (-> 409 Conflict)."""


class CompareFailed(StorageError):
    """An extra compare of a Txn failed; ``key`` names the first failing extra key."""


class Compacted(StorageError):
    """A watch asked for a revision older than the store's compaction (-> 410 Gone)."""

    def __init__(self, key: str, compact_revision: int):
        self.compact_revision = compact_revision
        super().__init__(key, f"required revision has been compacted (compact revision {compact_revision})")


class Unavailable(StorageError):
    """The store could not be reached (-> 500/503 with the gRPC message)."""


@dataclass
class KeyValue:
    """One stored object: decoded JSON value with ``metadata.resourceVersion`` set."""

    key: str
    obj: dict
    mod_revision: int
    create_revision: int
    stale: bool = False  # read with a key other than the current write key (encryption at rest)


class Event:
    """One change seen by a watch, mirrors etcd3 watcher's event.

    ``type`` is ``PUT``/``DELETE``; ``obj`` is the new object (PUT) or the
    last state (DELETE) with resourceVersion = ``revision``; ``prev`` is the
    previous state for a PUT that modified an existing key, else None. A
    watch passes the previous value as ``prev_kv``, decoded only when ``prev``
    is read (the watch cache usually still holds that state itself).
    """

    __slots__ = ("type", "key", "obj", "revision", "created", "_prev", "_prev_kv", "_transformers")

    def __init__(self, type: str, key: str, obj: dict, prev: dict | None, revision: int, created: bool = False,
                 *, prev_kv: kv_pb2.KeyValue | None = None, transformers: StorageTransformers | None = None):
        self.type, self.key, self.obj, self.revision, self.created = type, key, obj, revision, created
        self._prev, self._prev_kv, self._transformers = prev, prev_kv, transformers

    @property
    def prev(self) -> dict | None:
        if self._prev is None and self._prev_kv is not None:
            self._prev, self._prev_kv = decode(self._prev_kv, transformers=self._transformers), None
        return self._prev

    def __repr__(self) -> str:
        return f"Event({self.type}, {self.key!r}, revision={self.revision})"


@dataclass
class ExtraOps:
    """Compares and ops added to a write's Txn (all on keys outside the object's own key).

    ``absent``: keys that must not exist; ``puts``: key -> bytes to put;
    ``deletes``: keys to delete.
    """

    absent: list[str] = field(default_factory=list)
    puts: dict[str, bytes] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)


def prefix_end(prefix: bytes) -> bytes:
    """etcd's range_end for "every key starting with prefix" (last byte + 1)."""
    b = bytearray(prefix)
    for i in range(len(b) - 1, -1, -1):
        if b[i] < 0xFF:
            b[i] += 1
            return bytes(b[: i + 1])
    return b"\x00"


def plaintext(kv: kv_pb2.KeyValue, transformers: StorageTransformers | None) -> tuple[bytes, bool]:
    """(object bytes, stale) of a stored value: decrypted when its resource is encrypted at rest.

    Raises encryption.TransformError naming the key when it cannot be decrypted."""
    t = transformers.for_key(kv.key.decode()) if transformers is not None else None
    if t is None:
        return kv.value, False
    try:
        return t.from_storage(kv.value, kv.key)
    except TransformError as e:
        raise TransformError(f'unable to transform key "{kv.key.decode()}": {e}') from None


def decode(kv: kv_pb2.KeyValue, *, revision: int | None = None,
           transformers: StorageTransformers | None = None) -> dict:
    """Object JSON of a stored KeyValue with resourceVersion set to ``revision`` (default its mod_revision)."""
    return decode_stale(kv, revision=revision, transformers=transformers)[0]


def decode_stale(kv: kv_pb2.KeyValue, *, revision: int | None = None,
                 transformers: StorageTransformers | None = None) -> tuple[dict, bool]:
    """``decode`` and whether the value was stored under an old encryption key (see ``plaintext``)."""
    data, stale = plaintext(kv, transformers)
    obj = codec.loads(data)
    obj.setdefault("metadata", {})["resourceVersion"] = str(revision if revision is not None else kv.mod_revision)
    return obj, stale


def encode(obj: dict, *, key: str = "", transformers: StorageTransformers | None = None) -> bytes:
    """Value bytes of an object: its JSON without metadata.resourceVersion (the revision carries it),
    encrypted with the current write key when ``key``'s resource is encrypted at rest."""
    meta = obj.get("metadata") or {}
    if "resourceVersion" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}}
    data = codec.dumps(obj)
    t = transformers.for_key(key) if transformers is not None else None
    return t.to_storage(data, key.encode()) if t is not None else data


def _grpc_target(endpoint: str) -> str:
    for scheme in ("http://", "https://", "unix://"):
        if endpoint.startswith(scheme):
            return endpoint if scheme == "unix://" else endpoint[len(scheme):]
    return endpoint


def _ipv4_literal(target: str) -> bool:
    host, _, port = target.rpartition(":")
    parts = host.split(".")
    return port.isdigit() and len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)


def channel_target(targets: list[str]) -> tuple[str, bool]:
    """The gRPC target for ``targets`` ("host:port" strings) and whether it spans all of them.

    Several IPv4 literals become one ``ipv4:a:p,b:q`` target that grpc's
    round_robin policy balances over, skipping members that are down (as
    clientv3 3.4's balancer does); anything else is dialed one at a time.
    """
    if len(targets) > 1 and all(_ipv4_literal(t) for t in targets):
        return "ipv4:" + ",".join(targets), True
    return targets[0], False


# etcd's UNAVAILABLE messages meaning "the request was not proposed": safe to
# send a write again. Others ("request timed out", "leader changed", a socket
# closed mid-call) leave a write's outcome unknown, so only reads retry them.
_NOT_PROPOSED = ("no leader", "failed to connect", "connection refused", "connections to all backends failing",
                 "not connected", "too many requests", "dns resolution failed")
_MUTATIONS = frozenset({"Put", "Txn", "DeleteRange", "Compact"})


def retryable(method: str, e: grpc.aio.AioRpcError) -> bool:
    """Whether ``method`` may be sent again after ``e`` (mirrors clientv3's repeatable/non-repeatable retry policy)."""
    code = e.code()
    if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return False
    if method not in _MUTATIONS:
        return True
    details = (e.details() or "").lower()
    return code == grpc.StatusCode.UNAVAILABLE and any(s in details for s in _NOT_PROPOSED)


class Etcd3Store:
    """Async client of the etcd v3 KV and Watch services for one apiserver.

    ``endpoints`` like ``["http://127.0.0.1:2379", ...]`` (etcd's
    ``--etcd-servers``). Several IPv4 endpoints share one channel balanced
    round-robin over the members that answer, so a dead member (or a dead
    leader) is skipped; other endpoint lists are dialed one at a time and
    rotated on UNAVAILABLE. A call that fails with UNAVAILABLE (e.g. "no
    leader" during an election) is retried with backoff for up to
    ``timeout`` seconds (writes only when etcd cannot have applied them);
    then methods raise Unavailable.

    TLS as kube-apiserver's --etcd-cafile / --etcd-certfile / --etcd-keyfile (file
    paths): with ``https://`` endpoints or any of them, the channel is TLS, trusting
    ``cafile`` (else the system CAs) and presenting ``certfile``/``keyfile`` as the
    client certificate etcd's --client-cert-auth asks for. Raises OSError when a
    file cannot be read.
    """

    def __init__(self, endpoints: list[str], *, timeout: float = 10.0, cafile: str | None = None,
                 certfile: str | None = None, keyfile: str | None = None,
                 transformers: StorageTransformers | None = None):
        self.transformers = transformers  # encryption at rest (--encryption-provider-config), None: plaintext
        if not endpoints:
            raise ValueError("at least one etcd endpoint is required")
        if bool(certfile) != bool(keyfile):
            raise ValueError("--etcd-certfile and --etcd-keyfile must be given together")
        self._credentials = None
        if cafile or certfile or any(e.startswith("https://") for e in endpoints):
            def read(path):
                with open(path, "rb") as f:
                    return f.read()
            self._credentials = grpc.ssl_channel_credentials(
                root_certificates=read(cafile) if cafile else None,
                private_key=read(keyfile) if keyfile else None,
                certificate_chain=read(certfile) if certfile else None)
        self.endpoints = [_grpc_target(e) for e in endpoints]
        self.timeout = timeout
        self._index = 0
        self._channel: grpc.aio.Channel | None = None
        self._kv: pb_grpc.KVStub | None = None
        self._watch: pb_grpc.WatchStub | None = None
        self._target, self._balanced = channel_target(self.endpoints)
        self._tls_name: str | None = None
        if self._credentials is not None and self._balanced:
            # One balanced channel has one authority, so TLS checks every member's certificate
            # against one name: fine when all members share a host (a loopback cluster), else
            # dial members one at a time so each is checked against its own address.
            hosts = {t.rpartition(":")[0] for t in self.endpoints}
            if len(hosts) == 1:
                self._tls_name = hosts.pop()
            else:
                self._target, self._balanced = self.endpoints[0], False

    def _connect(self) -> None:
        target = self._target if self._balanced else self.endpoints[self._index % len(self.endpoints)]
        options = [
            ("grpc.keepalive_time_ms", 30000),
            ("grpc.keepalive_timeout_ms", 10000),
            ("grpc.max_receive_message_length", 256 * 1024 * 1024),
            # A killed member is retried quickly once it is back, not after grpc's 1 s..120 s backoff.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        if self._balanced:
            options.append(("grpc.lb_policy_name", "round_robin"))
        if self._tls_name:
            options.append(("grpc.ssl_target_name_override", self._tls_name))
        if self._credentials is not None:
            self._channel = grpc.aio.secure_channel(target, self._credentials, options=options)
        else:
            self._channel = grpc.aio.insecure_channel(target, options=options)
        self._kv = pb_grpc.KVStub(self._channel)
        self._watch = pb_grpc.WatchStub(self._channel)

    async def _rotate(self) -> None:
        # Only for endpoint lists that cannot share one balanced channel; the old
        # channel is closed late so RPCs still running on it are not cut.
        if len(self.endpoints) > 1 and not self._balanced:
            old = self._channel
            self._index += 1
            self._connect()
            if old is not None:
                asyncio.get_running_loop().call_later(self.timeout, lambda: asyncio.ensure_future(old.close()))

    @property
    def kv(self) -> pb_grpc.KVStub:
        """The etcd KV stub, connecting lazily on first use."""
        if self._kv is None:
            self._connect()
        return self._kv

    @property
    def watch_stub(self) -> pb_grpc.WatchStub:
        """The etcd Watch stub, connecting lazily on first use."""
        if self._watch is None:
            self._connect()
        return self._watch

    async def close(self) -> None:
        """Close the gRPC channel."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._kv = self._watch = None

    async def _call(self, method: str, request):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        delay = 0.05
        while True:
            left = deadline - loop.time()
            try:
                return await getattr(self.kv, method)(request, timeout=max(left, 0.1))
            except grpc.aio.AioRpcError as e:
                if not retryable(method, e) or loop.time() + delay >= deadline:
                    raise Unavailable("", f"etcd {method}: {e.code().name}: {e.details()}") from e
                log.debug("etcd %s: %s: %s; retrying", method, e.code().name, e.details())
                await self._rotate()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    async def revision(self) -> int:
        """The store's current revision (header of a tiny linearizable Range)."""
        resp = await self._call("Range", pb.RangeRequest(key=b"/registry/health", count_only=True))
        return resp.header.revision

    async def get(self, key: str) -> KeyValue | None:
        """The object at ``key`` (linearizable read), or None."""
        resp = await self._call("Range", pb.RangeRequest(key=key.encode()))
        if not resp.kvs:
            return None
        kv = resp.kvs[0]
        return self._key_value(kv)

    async def list(self, prefix: str, *, page: int = 1000) -> tuple[list[KeyValue], int]:
        """Every object under ``prefix`` in key order, and the store revision they were read at.

        Pages through the range ``page`` keys at a time, all at one revision.
        """
        start, end = prefix.encode(), prefix_end(prefix.encode())
        out: list[KeyValue] = []
        revision = 0
        while True:
            resp = await self._call("Range", pb.RangeRequest(key=start, range_end=end, limit=page,
                                                            revision=revision))
            if not revision:
                revision = resp.header.revision
            for kv in resp.kvs:
                out.append(self._key_value(kv))
            if not resp.more or not resp.kvs:
                return out, revision
            start = resp.kvs[-1].key + b"\x00"

    def _key_value(self, kv: kv_pb2.KeyValue) -> KeyValue:
        obj, stale = decode_stale(kv, transformers=self.transformers)
        return KeyValue(kv.key.decode(), obj, kv.mod_revision, kv.create_revision, stale)

    async def keys(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (keys_only Range), e.g. the ClusterIP reservations."""
        resp = await self._call("Range", pb.RangeRequest(key=prefix.encode(), range_end=prefix_end(prefix.encode()),
                                                        keys_only=True))
        return [kv.key.decode() for kv in resp.kvs]

    @staticmethod
    def _extra(extra: ExtraOps | None) -> tuple[list, list]:
        compares, ops = [], []
        if extra:
            for k in extra.absent:
                compares.append(pb.Compare(key=k.encode(), target=pb.Compare.CREATE,
                                           result=pb.Compare.EQUAL, create_revision=0))
            for k, v in extra.puts.items():
                ops.append(pb.RequestOp(request_put=pb.PutRequest(key=k.encode(), value=v)))
            for k in extra.deletes:
                ops.append(pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=k.encode())))
        return compares, ops

    async def _explain_failure(self, key: str, extra: ExtraOps | None) -> None:
        if extra:
            for k in extra.absent:
                if await self.get_raw_exists(k):
                    raise CompareFailed(k, f"key {k} already exists")

    async def get_raw_exists(self, key: str) -> bool:
        """Whether ``key`` exists (count_only Range)."""
        resp = await self._call("Range", pb.RangeRequest(key=key.encode(), count_only=True))
        return resp.count > 0

    async def create(self, key: str, obj: dict, *, extra: ExtraOps | None = None) -> dict:
        """Create ``obj`` at ``key``; returns it with resourceVersion set.

        Raises KeyExists when the key exists, CompareFailed when an
        ``extra.absent`` key exists.
        """
        compares, ops = self._extra(extra)
        compares.insert(0, pb.Compare(key=key.encode(), target=pb.Compare.CREATE,
                                      result=pb.Compare.EQUAL, create_revision=0))
        ops.insert(0, pb.RequestOp(request_put=pb.PutRequest(key=key.encode(), value=encode(obj, key=key, transformers=self.transformers))))
        resp = await self._call("Txn", pb.TxnRequest(compare=compares, success=ops))
        if not resp.succeeded:
            if await self.get_raw_exists(key):
                raise KeyExists(key)
            await self._explain_failure(key, extra)
            raise KeyExists(key)
        return _with_rv(obj, resp.header.revision)

    async def update(self, key: str, obj: dict, *, expected_revision: int,
                     extra: ExtraOps | None = None) -> dict:
        """Replace the object at ``key`` if its mod_revision is ``expected_revision``.

        Returns the object with its new resourceVersion; raises Conflict
        (or KeyNotFound when the key is gone, CompareFailed on an extra key).
        """
        compares, ops = self._extra(extra)
        compares.insert(0, pb.Compare(key=key.encode(), target=pb.Compare.MOD,
                                      result=pb.Compare.EQUAL, mod_revision=expected_revision))
        ops.insert(0, pb.RequestOp(request_put=pb.PutRequest(key=key.encode(), value=encode(obj, key=key, transformers=self.transformers))))
        resp = await self._call("Txn", pb.TxnRequest(compare=compares, success=ops))
        if not resp.succeeded:
            await self._explain_failure(key, extra)
            if not await self.get_raw_exists(key):
                raise KeyNotFound(key)
            raise Conflict(key)
        return _with_rv(obj, resp.header.revision)

    async def delete(self, key: str, *, expected_revision: int, extra: ExtraOps | None = None) -> int:
        """Delete ``key`` if its mod_revision is ``expected_revision``; returns the delete's revision.

        Raises Conflict, or KeyNotFound when the key is already gone.
        """
        compares, ops = self._extra(extra)
        compares.insert(0, pb.Compare(key=key.encode(), target=pb.Compare.MOD,
                                      result=pb.Compare.EQUAL, mod_revision=expected_revision))
        ops.insert(0, pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=key.encode())))
        resp = await self._call("Txn", pb.TxnRequest(compare=compares, success=ops))
        if not resp.succeeded:
            if not await self.get_raw_exists(key):
                raise KeyNotFound(key)
            raise Conflict(key)
        return resp.header.revision

    async def put_raw(self, key: str, value: bytes) -> int:
        """Unconditional put (bootstrap markers); returns the revision."""
        resp = await self._call("Put", pb.PutRequest(key=key.encode(), value=value))
        return resp.header.revision

    async def delete_raw(self, key: str) -> None:
        """Unconditional delete of one key (releasing a ClusterIP reservation left behind)."""
        await self._call("DeleteRange", pb.DeleteRangeRequest(key=key.encode()))

    async def compact(self, revision: int) -> None:
        """Compact the store's history up to ``revision`` (tests of 410 Gone use it)."""
        await self._call("Compact", pb.CompactionRequest(revision=revision, physical=True))

    def watch(self, prefix: str, start_revision: int) -> "WatchStream":
        """A watch on every key under ``prefix`` from ``start_revision`` (see WatchStream)."""
        return WatchStream(self, prefix, start_revision)


def _with_rv(obj: dict, revision: int) -> dict:
    meta = dict(obj.get("metadata") or {})
    meta["resourceVersion"] = str(revision)
    return {**obj, "metadata": meta}


class WatchStream:
    """One etcd Watch (bidi stream, prev_kv on) over a key prefix.

    ``async for batch in stream`` yields lists of Event in revision order;
    an empty list is a progress notification (``stream.revision`` advanced).
    Raises Compacted when the start revision is compacted and Unavailable
    when the stream breaks.
    """

    def __init__(self, store: Etcd3Store, prefix: str, start_revision: int):
        self.store = store
        self.prefix = prefix
        self.start_revision = start_revision
        self.revision = start_revision - 1
        self._call = None

    def cancel(self) -> None:
        """Stop the stream; the iterator ends."""
        if self._call is not None:
            self._call.cancel()

    async def __aiter__(self) -> AsyncIterator[list[Event]]:
        self._call = self.store.watch_stub.Watch()
        p = self.prefix.encode()
        tf = self.store.transformers
        try:
            await self._call.write(pb.WatchRequest(create_request=pb.WatchCreateRequest(
                key=p, range_end=prefix_end(p), start_revision=self.start_revision, prev_kv=True)))
            while True:
                resp = await self._call.read()
                if resp is grpc.aio.EOF:
                    raise Unavailable(self.prefix, "etcd watch stream ended")
                if resp.compact_revision:
                    raise Compacted(self.prefix, resp.compact_revision)
                if resp.canceled:
                    raise Unavailable(self.prefix, f"etcd watch canceled: {resp.cancel_reason}")
                if resp.created and not resp.events:
                    continue
                batch = []
                for ev in resp.events:
                    kv = ev.kv
                    key = kv.key.decode()
                    if ev.type == kv_pb2.Event.DELETE:
                        if not ev.HasField("prev_kv") or not ev.prev_kv.value:
                            continue
                        batch.append(Event("DELETE", key, decode(ev.prev_kv, revision=kv.mod_revision,
                                                                 transformers=tf), None,
                                           kv.mod_revision))
                    else:
                        prev_kv = ev.prev_kv if ev.HasField("prev_kv") and ev.prev_kv.value else None
                        batch.append(Event("PUT", key, decode(kv, transformers=tf), None, kv.mod_revision,
                                           created=kv.create_revision == kv.mod_revision, prev_kv=prev_kv,
                                           transformers=tf))
                    self.revision = max(self.revision, kv.mod_revision)
                if not resp.events:
                    self.revision = max(self.revision, resp.header.revision)
                yield batch
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED:
                return
            raise Unavailable(self.prefix, f"etcd watch: {e.code().name}: {e.details()}") from e
        finally:
            self._call.cancel()
