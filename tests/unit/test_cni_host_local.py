"""host-local allocation and the plugin skeleton, without root (files only)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cni import host_local, libcni
from cni.skel import CmdArgs, CNIError, parse_args


def args(tmp_path, cid: str, **ipam) -> CmdArgs:
    conf = {"cniVersion": "1.0.0", "name": "net1", "type": "host-local",
            "ipam": {"type": "host-local", "dataDir": str(tmp_path), **ipam}}
    return CmdArgs(command="ADD", container_id=cid, netns="/x", ifname="eth0", args="", path=(), conf=conf)


def test_allocates_skipping_network_gateway_and_broadcast(tmp_path):
    """A /30 has exactly one usable address once .0, gateway .1 and broadcast .3 are skipped."""
    r = host_local.cmd_add(args(tmp_path, "a", subnet="10.244.250.0/30"))
    assert r["ips"] == [{"address": "10.244.250.2/30", "gateway": "10.244.250.1"}]
    with pytest.raises(CNIError, match="no IP addresses available"):
        host_local.cmd_add(args(tmp_path, "b", subnet="10.244.250.0/30"))


def test_add_is_idempotent_and_del_frees(tmp_path):
    a = args(tmp_path, "a", ranges=[[{"subnet": "10.244.250.0/24"}]], routes=[{"dst": "0.0.0.0/0"}])
    first = host_local.cmd_add(a)
    assert host_local.cmd_add(a) == first
    assert first["routes"] == [{"dst": "0.0.0.0/0"}]
    lease = tmp_path / "net1" / "10.244.250.2"
    assert lease.read_bytes() == b"a\r\neth0"  # the reference plugin's on-disk format
    host_local.cmd_check(a)
    host_local.cmd_del(a)
    host_local.cmd_del(a)
    assert not lease.exists()
    with pytest.raises(CNIError):
        host_local.cmd_check(a)


def test_round_robin_after_last_reserved(tmp_path):
    spec = {"ranges": [[{"subnet": "10.244.250.0/24", "rangeStart": "10.244.250.10", "rangeEnd": "10.244.250.12"}]]}
    ips = [host_local.cmd_add(args(tmp_path, c, **spec))["ips"][0]["address"] for c in ("a", "b")]
    assert ips == ["10.244.250.10/24", "10.244.250.11/24"]
    host_local.cmd_del(args(tmp_path, "a", **spec))
    assert host_local.cmd_add(args(tmp_path, "c", **spec))["ips"][0]["address"] == "10.244.250.12/24"


def test_v040_results_carry_version(tmp_path):
    a = args(tmp_path, "a", subnet="10.244.250.0/24")
    a.conf["cniVersion"] = "0.4.0"
    assert host_local.cmd_add(a)["ips"][0]["version"] == "4"


@pytest.mark.parametrize("env,stdin,code", [
    pytest.param({}, b"{}", 4, id="no-command"),
    pytest.param({"CNI_COMMAND": "ADD"}, b"{}", 4, id="missing-env"),
    pytest.param({"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "a", "CNI_IFNAME": "eth0"}, b"[1]", 6, id="not-object"),
    pytest.param({"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "a", "CNI_IFNAME": "eth0"},
                 b'{"cniVersion": "2.0.0"}', 1, id="bad-version"),
])
def test_parse_args_errors(env, stdin, code):
    with pytest.raises(CNIError) as err:
        parse_args(env, stdin)
    assert err.value.code == code


def test_executable_prints_spec_error_json(tmp_path):
    """The module run as a plugin prints {cniVersion, code, msg, details} and exits 1."""
    env = dict(os.environ, CNI_COMMAND="ADD", CNI_CONTAINERID="a", CNI_NETNS="/x", CNI_IFNAME="eth0",
               CNI_PATH=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "cni.host_local"], input=b'{"cniVersion":"1.0.0","name":"n"}',
                          env=env, capture_output=True, timeout=30, check=False)
    assert proc.returncode == 1
    assert set(json.loads(proc.stdout)) == {"cniVersion", "code", "msg", "details"}


def test_conflist_roundtrip(tmp_path):
    """The conflist the shim writes loads back through libcni with our plugin types."""
    conf = libcni.kubeling_conflist(pod_cidr="10.244.1.0/24", bridge="kubeling0", data_dir="/s/ipam")
    (tmp_path / "10-kubeling.conflist").write_text(json.dumps(conf))
    net = libcni.load_conf_dir(str(tmp_path))
    assert net.name == "kubeling" and [p["type"] for p in net.plugins] == ["bridge"]
    assert net.plugin_conf(net.plugins[0], None)["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24"}]]
    assert libcni.load_conf_dir(str(tmp_path / "missing")) is None
    assert libcni.pod_ip({"ips": [{"address": "10.244.1.7/24"}]}) == "10.244.1.7"
