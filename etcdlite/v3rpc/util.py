"""Turning exceptions into gRPC statuses for every unary etcd RPC.

Mirrors etcd's togRPCError (api/v3rpc/util.go): a handler raises, the client
gets etcd's status code and message, never a traceback.
"""
from __future__ import annotations

import functools
import logging

import grpc

from etcdlite.v3rpc.rpctypes import to_etcd_error

log = logging.getLogger(__name__)


def etcd_errors(handler):
    """Decorate a unary grpc.aio handler ``(self, request, context)`` so that any
    exception aborts the call with etcd's status (UNKNOWN ones are logged)."""
    @functools.wraps(handler)
    async def wrapper(self, request, context):
        try:
            return await handler(self, request, context)
        except Exception as exc:
            err = to_etcd_error(exc)
            if err.code == grpc.StatusCode.UNKNOWN:
                log.exception("%s failed", handler.__name__)
        await context.abort(err.code, err.message)
    return wrapper
