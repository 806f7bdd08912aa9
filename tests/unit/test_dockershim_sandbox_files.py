"""The shim's per-sandbox resolv.conf and hosts (kubelet/dockershim/sandbox_files.py)."""
from kubelet.dockershim.sandbox_files import SandboxFiles
from proto.cri import api_pb2 as pb


def test_write_binds_remove(tmp_path):
    files = SandboxFiles(str(tmp_path / "sandbox-files"))
    files.write("abc", pb.DNSConfig(servers=["10.96.0.10"], searches=["default.svc.cluster.local"],
                                    options=["ndots:5"]))
    d = tmp_path / "sandbox-files" / "abc"
    assert (d / "resolv.conf").read_text() == ("nameserver 10.96.0.10\nsearch default.svc.cluster.local\n"
                                               "options ndots:5\n")
    assert (d / "hosts").read_text()  # the node's /etc/hosts
    assert files.binds("abc", set()) == [f"{d}/resolv.conf:/etc/resolv.conf:rw", f"{d}/hosts:/etc/hosts:rw"]
    assert files.binds("abc", {"/etc/hosts"}) == [f"{d}/resolv.conf:/etc/resolv.conf:rw"]
    assert files.binds("other", set()) == []
    files.remove("abc")
    files.remove("abc")
    assert not d.exists()


def test_no_servers_copies_the_node_resolv_conf(tmp_path):
    files = SandboxFiles(str(tmp_path))
    files.write("abc", pb.DNSConfig())
    assert (tmp_path / "abc" / "resolv.conf").read_text() == open("/etc/resolv.conf").read()
