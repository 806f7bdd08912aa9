"""etcd's gRPC errors: status codes and the exact messages clients match on.

Mirrors api/v3rpc/rpctypes/error.go. Store and lessor errors are mapped here,
so that every layer below the gRPC services stays free of gRPC.
"""
from __future__ import annotations

import grpc

from etcdlite.lease.lessor import LeaseExistsError, LeaseNotFoundError
from etcdlite.mvcc.errors import CompactedError, FutureRevError


class EtcdError(Exception):
    """An error a client sees as gRPC status ``code`` with ``message``."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_IA = grpc.StatusCode.INVALID_ARGUMENT

ErrEmptyKey = EtcdError(_IA, "etcdserver: key is not provided")
ErrKeyNotFound = EtcdError(_IA, "etcdserver: key not found")
ErrValueProvided = EtcdError(_IA, "etcdserver: value is provided")
ErrLeaseProvided = EtcdError(_IA, "etcdserver: lease is provided")
ErrTooManyOps = EtcdError(_IA, "etcdserver: too many operations in txn request")
ErrDuplicateKey = EtcdError(_IA, "etcdserver: duplicate key given in txn request")
ErrCompacted = EtcdError(grpc.StatusCode.OUT_OF_RANGE,
                         "etcdserver: mvcc: required revision has been compacted")
ErrFutureRev = EtcdError(grpc.StatusCode.OUT_OF_RANGE,
                         "etcdserver: mvcc: required revision is a future revision")
ErrLeaseNotFound = EtcdError(grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found")
ErrLeaseExist = EtcdError(grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: lease already exists")
ErrLeaseTTLTooLarge = EtcdError(grpc.StatusCode.OUT_OF_RANGE, "etcdserver: too large lease TTL")
ErrStopped = EtcdError(grpc.StatusCode.UNAVAILABLE, "etcdserver: server stopped")
ErrNoLeader = EtcdError(grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader")
ErrNotLeader = EtcdError(grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: not leader")
ErrBadLeaderTransferee = EtcdError(grpc.StatusCode.FAILED_PRECONDITION,
                                   "etcdserver: bad leader transferee")
ErrTimeoutLeaderTransfer = EtcdError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                     "etcdserver: request timed out, leader transfer took too long")
ErrTimeout = EtcdError(grpc.StatusCode.UNAVAILABLE, "etcdserver: request timed out")
ErrRequestTooLarge = EtcdError(_IA, "etcdserver: request is too large")
ErrMemberNotFound = EtcdError(grpc.StatusCode.NOT_FOUND, "etcdserver: member not found")
ErrMemberExist = EtcdError(grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: member ID already exist")
ErrPeerURLExist = EtcdError(grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: Peer URLs already exists")
ErrMemberBadURLs = EtcdError(_IA, "etcdserver: given member URLs are invalid")
ErrMemberNotEnoughStarted = EtcdError(
    grpc.StatusCode.FAILED_PRECONDITION,
    "etcdserver: re-configuration failed due to not enough started members")
ErrUnhealthy = EtcdError(grpc.StatusCode.UNAVAILABLE, "etcdserver: unhealthy cluster")


def to_etcd_error(exc: BaseException) -> EtcdError:
    """Map a store, lessor or server exception to the EtcdError a client sees.

    Unknown exceptions become UNKNOWN with their text, never a traceback.
    """
    if isinstance(exc, EtcdError):
        return exc
    if isinstance(exc, CompactedError):
        return ErrCompacted
    if isinstance(exc, FutureRevError):
        return ErrFutureRev
    if isinstance(exc, LeaseNotFoundError):
        return ErrLeaseNotFound
    if isinstance(exc, LeaseExistsError):
        return ErrLeaseExist
    return EtcdError(grpc.StatusCode.UNKNOWN, f"etcdserver: {exc}")
