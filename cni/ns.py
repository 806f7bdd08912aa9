"""Network namespaces for the plugins: a netlink socket opened inside a netns.

Mirrors containernetworking/plugins pkg/ns (``ns.WithNetNSPath``): setns(2)
moves only the calling *thread* into the namespace, so a thread can enter a
container's netns, open a socket there (a socket stays bound to the netns it
was created in) and come back, while other threads keep working in the host
netns. pyroute2's own ``IPRoute(netns=...)`` forks a child to do this, which
is slow and unsafe in the multi-threaded CNI server (cni.server); this module
does it in-thread.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import socket
from typing import Iterator

from pyroute2 import IPRoute

from cni.skel import ERR_IO, CNIError

CLONE_NEWNET = 0x40000000
NETLINK_ROUTE = 0

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def netlink_socket(netns_path: str) -> socket.socket:
    """An rtnetlink socket created inside the netns at ``netns_path``.

    Raises CNIError(ERR_IO) when the netns cannot be opened or entered. If the
    thread cannot return to its own netns the process exits (status 70): a
    thread left in a container's netns would corrupt every later request.
    """
    try:
        target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise CNIError(ERR_IO, f"failed to open netns {netns_path!r}: {e.strerror}") from None
    try:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                _setns(target)
            except OSError as e:
                raise CNIError(ERR_IO, f"failed to enter netns {netns_path!r}: {e.strerror}") from None
            try:
                return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
            finally:
                try:
                    _setns(own)
                except OSError:
                    os._exit(70)
        finally:
            os.close(own)
    finally:
        os.close(target)


@contextlib.contextmanager
def iproute_in(netns_path: str) -> Iterator[IPRoute]:
    """``with iproute_in(path) as ipr``: an IPRoute talking to the netns at ``path``.

    Same errors as netlink_socket; the socket is closed on exit.
    """
    sock = netlink_socket(netns_path)
    try:
        with IPRoute(use_socket=sock) as ipr:
            yield ipr
    finally:
        sock.close()
