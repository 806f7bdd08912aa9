"""The few rtnetlink requests of a bridge ADD, encoded by hand.

Why: pyroute2 (0.9) runs an asyncio loop for every request, about half a
millisecond each, and an ADD makes a dozen of them: more than the stub's
whole budget next to the reference Go plugin. These requests (read a link by
name or index, set it up / its master / its MTU, a bridge port's hairpin
mode, add an IPv4 address) are simple fixed structures, so this module
writes them on a plain netlink socket (~50 us each). Creating the veth pair
(nested link info, peer in another netns) stays with pyroute2.

Layouts follow the kernel's uapi headers (linux/netlink.h, rtnetlink.h,
if_link.h, if_addr.h), as containernetworking's vishvananda/netlink does.
Errors are pyroute2's NetlinkError (``.code`` a positive errno), so callers
handle both alike.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import os
import socket
import struct

from pyroute2.netlink.exceptions import NetlinkError

NETLINK_ROUTE = 0
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK, RTM_NEWADDR = 16, 17, 18, 19, 20
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_PROTINFO, IFLA_LINKINFO = 1, 3, 4, 10, 12, 18
IFLA_INFO_KIND = 1
IFLA_BRPORT_MODE = 4
IFA_ADDRESS, IFA_LOCAL = 1, 2
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF
AF_UNSPEC, AF_INET, AF_BRIDGE = 0, 2, 7
IFF_UP = 0x1

_NLMSGHDR = struct.Struct("=IHHII")   # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")  # family, (pad), type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")   # family, prefixlen, flags, scope, index
_RTATTR = struct.Struct("=HH")         # len, type


@dataclasses.dataclass(frozen=True)
class Link:
    """What an RTM_NEWLINK answer tells of one interface."""

    index: int
    flags: int
    name: str
    mac: str
    mtu: int
    kind: str  # IFLA_INFO_KIND ("bridge", "veth", ...), "" when the kernel gives none


def _attr(kind: int, data: bytes) -> bytes:
    out = _RTATTR.pack(_RTATTR.size + len(data), kind) + data
    return out + b"\0" * (-len(out) % 4)


def _attrs(buf: bytes, off: int = 0) -> dict[int, bytes]:
    out = {}
    while off + _RTATTR.size <= len(buf):
        length, kind = _RTATTR.unpack_from(buf, off)
        if length < _RTATTR.size:
            break
        out.setdefault(kind & NLA_TYPE_MASK, buf[off + _RTATTR.size:off + length])
        off += (length + 3) & ~3
    return out


def _link(payload: bytes) -> Link:
    _, _, index, flags, _ = _IFINFOMSG.unpack_from(payload)
    a = _attrs(payload, _IFINFOMSG.size)
    info = _attrs(a.get(IFLA_LINKINFO, b""))
    return Link(index=index, flags=flags, name=a.get(IFLA_IFNAME, b"").rstrip(b"\0").decode(),
                mac=":".join(f"{b:02x}" for b in a.get(IFLA_ADDRESS, b"")),
                mtu=struct.unpack("=I", a[IFLA_MTU])[0] if len(a.get(IFLA_MTU, b"")) == 4 else 0,
                kind=info.get(IFLA_INFO_KIND, b"").rstrip(b"\0").decode())


class Rtnl:
    """A NETLINK_ROUTE socket, talking to the netns it was created in (or ``sock``'s).

    ``with Rtnl() as r`` closes it; ``Rtnl(sock)`` uses (and closes) a socket made elsewhere,
    e.g. cni.ns.netlink_socket inside a container's netns. Methods raise NetlinkError.
    """

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.sock = sock or socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self._seq = itertools.count(1)

    def __enter__(self) -> "Rtnl":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def request(self, kind: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        """Send one request; return the (type, payload) answers up to its ACK or single answer.
        Raises NetlinkError with the kernel's errno."""
        seq = next(self._seq)
        self.sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | flags, seq, 0) + body)
        out = []
        while True:
            data = self.sock.recv(65536)
            off = 0
            while off + _NLMSGHDR.size <= len(data):
                length, mtype, _, mseq, _ = _NLMSGHDR.unpack_from(data, off)
                if length < _NLMSGHDR.size:
                    break
                payload = data[off + _NLMSGHDR.size:off + length]
                off += (length + 3) & ~3
                if mseq != seq:
                    continue  # an answer to an earlier request that gave up
                if mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    return out  # the ACK
                if mtype == NLMSG_DONE:
                    return out
                out.append((mtype, payload))
                if not flags & NLM_F_ACK:
                    return out  # a GET by name/index answers with one message

    def get_link(self, *, name: str = "", index: int = 0) -> Link | None:
        """The interface called ``name`` (or numbered ``index``); None when there is none (ENODEV)."""
        body = _IFINFOMSG.pack(AF_UNSPEC, 0, index, 0, 0)
        if name:
            body += _attr(IFLA_IFNAME, name.encode() + b"\0")
        try:
            answers = self.request(RTM_GETLINK, 0, body)
        except NetlinkError as e:
            if e.code == 19:  # ENODEV
                return None
            raise
        return next((_link(p) for t, p in answers if t == RTM_NEWLINK), None)

    def set_link(self, index: int, *, up: bool | None = None, master: int | None = None,
                 mtu: int | None = None) -> None:
        """Set the interface up (or down), its master device and/or its MTU in one request."""
        flags = IFF_UP if up else 0
        change = IFF_UP if up is not None else 0
        body = _IFINFOMSG.pack(AF_UNSPEC, 0, index, flags, change)
        if master is not None:
            body += _attr(IFLA_MASTER, struct.pack("=I", master))
        if mtu is not None:
            body += _attr(IFLA_MTU, struct.pack("=I", mtu))
        self.request(RTM_SETLINK, NLM_F_ACK, body)

    def del_link(self, index: int) -> None:
        """Delete the interface numbered ``index`` (a veth takes its peer along)."""
        self.request(RTM_DELLINK, NLM_F_ACK, _IFINFOMSG.pack(AF_UNSPEC, 0, index, 0, 0))

    def set_hairpin(self, index: int, on: bool = True) -> None:
        """A bridge port's hairpin mode (IFLA_PROTINFO / IFLA_BRPORT_MODE, as netlink's LinkSetHairpin)."""
        body = _IFINFOMSG.pack(AF_BRIDGE, 0, index, 0, 0)
        body += _attr(IFLA_PROTINFO | NLA_F_NESTED, _attr(IFLA_BRPORT_MODE, bytes([1 if on else 0])))
        self.request(RTM_SETLINK, NLM_F_ACK, body)

    def add_addr(self, index: int, address: str, prefixlen: int) -> None:
        """Add an IPv4 address (IFA_LOCAL and IFA_ADDRESS, no broadcast, as pyroute2 and ip(8) do);
        NetlinkError EEXIST when the interface has it. ValueError for anything but IPv4."""
        ip = ipaddress.ip_address(address)
        if ip.version != 4:
            raise ValueError(f"rtnl.add_addr: IPv4 only, not {address}")
        body = _IFADDRMSG.pack(AF_INET, prefixlen, 0, 0, index)
        body += _attr(IFA_LOCAL, ip.packed) + _attr(IFA_ADDRESS, ip.packed)
        self.request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)
