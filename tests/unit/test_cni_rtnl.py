"""cni.rtnl's hand-written rtnetlink: message layouts and answers, against a fake socket (no root)."""
import struct

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from cni import rtnl


class FakeSock:
    """Records what is sent; answers with canned messages built for the request's sequence number."""

    def __init__(self, answer):
        self.sent, self.answer, self.closed = [], answer, False

    def bind(self, addr):
        pass

    def send(self, data):
        self.sent.append(data)

    def recv(self, size):
        seq = struct.unpack_from("=IHHII", self.sent[-1])[3]
        return b"".join(self.answer(seq))

    def close(self):
        self.closed = True


def msg(kind, seq, payload):
    return struct.pack("=IHHII", 16 + len(payload), kind, 0, seq, 0) + payload + b"\0" * (-len(payload) % 4)


def error(seq, code):
    return msg(rtnl.NLMSG_ERROR, seq, struct.pack("=i", -code) + b"\0" * 16)


def link_payload(index, flags, name, mac, mtu, kind):
    body = struct.pack("=BxHiII", 0, 1, index, flags, 0)
    body += rtnl._attr(rtnl.IFLA_IFNAME, name.encode() + b"\0")
    body += rtnl._attr(rtnl.IFLA_ADDRESS, bytes(mac))
    body += rtnl._attr(rtnl.IFLA_MTU, struct.pack("=I", mtu))
    body += rtnl._attr(rtnl.IFLA_LINKINFO | rtnl.NLA_F_NESTED, rtnl._attr(rtnl.IFLA_INFO_KIND, kind.encode() + b"\0"))
    return body


def test_get_link_by_name_parses_the_answer():
    sock = FakeSock(lambda seq: [msg(rtnl.RTM_NEWLINK, seq, link_payload(7, rtnl.IFF_UP, "kl0", [2, 0, 0, 0, 0, 0xab],
                                                                        1450, "bridge"))])
    with rtnl.Rtnl(sock) as r:
        link = r.get_link(name="kl0")
    assert link == rtnl.Link(index=7, flags=rtnl.IFF_UP, name="kl0", mac="02:00:00:00:00:ab", mtu=1450, kind="bridge")
    length, kind, flags, _, _ = struct.unpack_from("=IHHII", sock.sent[0])
    assert kind == rtnl.RTM_GETLINK and flags == rtnl.NLM_F_REQUEST and length == len(sock.sent[0])
    assert rtnl._attrs(sock.sent[0], 32)[rtnl.IFLA_IFNAME] == b"kl0\0" and sock.closed


def test_missing_link_is_none_and_other_errors_raise():
    assert rtnl.Rtnl(FakeSock(lambda seq: [error(seq, 19)])).get_link(name="nope") is None
    with pytest.raises(NetlinkError) as e:
        rtnl.Rtnl(FakeSock(lambda seq: [error(seq, 1)])).get_link(index=3)
    assert e.value.code == 1


def test_writes_wait_for_their_ack_and_skip_stale_answers():
    sock = FakeSock(lambda seq: [error(seq - 1, 17), error(seq, 0)])  # an older request's error, then our ACK
    r = rtnl.Rtnl(sock)
    r.set_link(5, up=True, master=2)
    _, kind, flags, _, _ = struct.unpack_from("=IHHII", sock.sent[-1])
    family, _, index, ifi_flags, change = struct.unpack_from("=BxHiII", sock.sent[-1], 16)
    assert (kind, flags & rtnl.NLM_F_ACK, index, ifi_flags, change) == (rtnl.RTM_SETLINK, rtnl.NLM_F_ACK, 5, 1, 1)
    assert struct.unpack("=I", rtnl._attrs(sock.sent[-1], 32)[rtnl.IFLA_MASTER]) == (2,)
    r.add_addr(5, "10.244.0.7", 24)
    _, kind, flags, _, _ = struct.unpack_from("=IHHII", sock.sent[-1])
    assert kind == rtnl.RTM_NEWADDR and flags & rtnl.NLM_F_EXCL and flags & rtnl.NLM_F_CREATE
    assert struct.unpack_from("=BBBBI", sock.sent[-1], 16) == (rtnl.AF_INET, 24, 0, 0, 5)
    a = rtnl._attrs(sock.sent[-1], 24)
    assert a[rtnl.IFA_LOCAL] == a[rtnl.IFA_ADDRESS] == bytes([10, 244, 0, 7])
    r.set_hairpin(5)
    assert struct.unpack_from("=BxHiII", sock.sent[-1], 16)[0] == rtnl.AF_BRIDGE
    nested = rtnl._attrs(sock.sent[-1], 32)[rtnl.IFLA_PROTINFO]
    assert rtnl._attrs(nested)[rtnl.IFLA_BRPORT_MODE] == b"\x01"
    with pytest.raises(ValueError):
        r.add_addr(5, "fd00::1", 64)
