"""The bridge and host-local plugins run as real executables in a real netns.

Needs root (netns, links). Uses only the test bridge "kltest0", the subnet
10.244.250.0/24 and a tmp dataDir; removes netns, bridge and veths in finally.
Also checks that the reference plugins in /usr/lib/cni work with our
configuration (our bridge + reference host-local, reference bridge + ours).
Every test runs twice: the stubs running the plugins standalone (no server)
and the stubs answered by a running ``python -m cni.server``, as on a node.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from cni import install, stub
from cni.bridge import host_veth_name

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                                reason="CNI e2e tests need root and iproute2 (netns, links)")

BRIDGE = "kltest0"
SUBNET = "10.244.250.0/24"
GATEWAY = "10.244.250.1"
REFERENCE_DIR = "/usr/lib/cni"


def run_plugin(path: str, command: str, conf: dict, *, container_id: str, netns: str,
               cni_path: str) -> tuple[int, dict | None]:
    """Execute one plugin binary like a runtime does; returns (exit code, JSON output)."""
    env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=container_id, CNI_NETNS=netns,
               CNI_IFNAME="eth0", CNI_PATH=cni_path)
    proc = subprocess.run([path], input=json.dumps(conf).encode(), env=env, capture_output=True,
                          timeout=30, check=False)
    out = proc.stdout.strip()
    return proc.returncode, (json.loads(out) if out else None)


def in_netns(ns: str, *cmd: str, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                          timeout=timeout, check=False)


def start_server(bin_dir: str, sock: str) -> subprocess.Popen:
    """``python -m cni.server`` for ``bin_dir``, returned once its pointer file is written."""
    proc = subprocess.Popen([sys.executable, "-m", "cni.server", "--socket", sock, "--bin-dir", bin_dir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while stub.server_socket_path(bin_dir) != sock:
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc)
            raise AssertionError(f"CNI server did not start: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    return proc


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture(params=["standalone", "server"])
def env(tmp_path, request):
    """A fresh netns, our plugins installed in tmp (answered by a CNI server or not), and cleanup."""
    ns = f"kltest-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    bin_dir = tmp_path / "bin"
    install.install(str(bin_dir))
    server = start_server(str(bin_dir), str(tmp_path / "cni.sock")) if request.param == "server" else None
    conf = {"cniVersion": "1.0.0", "name": "kltest", "type": "bridge", "bridge": BRIDGE,
            "isGateway": True, "hairpinMode": True, "mtu": 1450,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": SUBNET}]],
                     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(tmp_path / "ipam")}}
    try:
        yield {"ns": ns, "netns": f"/var/run/netns/{ns}", "bin": str(bin_dir), "conf": conf,
               "leases": tmp_path / "ipam" / "kltest"}
    finally:
        if server is not None:
            stop_server(server)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)
        for cid in ("c1", "c2", "ref1", "ref2"):
            subprocess.run(["ip", "link", "del", host_veth_name(cid, "eth0")], capture_output=True,
                           timeout=10, check=False)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, timeout=10, check=False)


def leases(env) -> list[str]:
    d = env["leases"]
    return sorted(p.name for p in d.iterdir() if p.name[0].isdigit()) if d.exists() else []


def test_add_check_del(env):
    """ADD gives eth0 an address and default route, the gateway answers, CHECK passes,
    a second ADD is refused, DEL frees the lease and is idempotent (also with empty netns)."""
    bridge = os.path.join(env["bin"], "bridge")
    rc, result = run_plugin(bridge, "ADD", env["conf"], container_id="c1", netns=env["netns"],
                            cni_path=env["bin"])
    assert rc == 0, result
    assert result["ips"][0]["address"] == "10.244.250.2/24"
    assert result["ips"][0]["gateway"] == GATEWAY
    addrs = in_netns(env["ns"], "ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert "10.244.250.2/24" in addrs
    assert f"default via {GATEWAY}" in in_netns(env["ns"], "ip", "route").stdout
    assert "mtu 1450" in in_netns(env["ns"], "ip", "link", "show", "eth0").stdout
    with open(f"/sys/class/net/{host_veth_name('c1', 'eth0')}/brport/hairpin_mode") as f:
        assert f.read().strip() == "1"
    ping = in_netns(env["ns"], "busybox", "ping", "-c", "2", "-W", "5", GATEWAY)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert leases(env) == ["10.244.250.2"]

    check_conf = dict(env["conf"], prevResult=result)
    rc, out = run_plugin(bridge, "CHECK", check_conf, container_id="c1", netns=env["netns"],
                         cni_path=env["bin"])
    assert rc == 0, out

    rc, out = run_plugin(bridge, "ADD", env["conf"], container_id="c1", netns=env["netns"],
                         cni_path=env["bin"])
    assert rc != 0 and "already exists" in out["msg"] and out["cniVersion"] == "1.0.0"

    rc, out = run_plugin(bridge, "DEL", env["conf"], container_id="c1", netns=env["netns"],
                         cni_path=env["bin"])
    assert rc == 0, out
    assert leases(env) == []
    assert "eth0" not in in_netns(env["ns"], "ip", "-o", "link").stdout
    rc, out = run_plugin(bridge, "DEL", env["conf"], container_id="c1", netns="", cni_path=env["bin"])
    assert rc == 0, out


def test_del_with_empty_netns_frees_ip(env):
    """After the netns is gone, DEL with an empty CNI_NETNS still frees the lease."""
    bridge = os.path.join(env["bin"], "bridge")
    rc, result = run_plugin(bridge, "ADD", env["conf"], container_id="c2", netns=env["netns"],
                            cni_path=env["bin"])
    assert rc == 0, result
    assert len(leases(env)) == 1
    rc, out = run_plugin(bridge, "DEL", env["conf"], container_id="c2", netns="", cni_path=env["bin"])
    assert rc == 0, out
    assert leases(env) == []


def test_errors_are_spec_json(env):
    """Bad config and unknown versions answer with the spec's error JSON and exit 1."""
    bridge = os.path.join(env["bin"], "bridge")
    rc, out = run_plugin(bridge, "ADD", dict(env["conf"], cniVersion="9.9.9"), container_id="c1",
                         netns=env["netns"], cni_path=env["bin"])
    assert rc == 1 and out["code"] == 1
    conf = dict(env["conf"])
    conf.pop("ipam")
    rc, out = run_plugin(bridge, "ADD", conf, container_id="c1", netns=env["netns"], cni_path=env["bin"])
    assert rc == 1 and out["code"] == 7 and "ipam" in out["msg"]
    rc, out = run_plugin(bridge, "VERSION", {}, container_id="", netns="", cni_path="")
    assert rc == 0 and "1.0.0" in out["supportedVersions"] and "0.4.0" in out["supportedVersions"]


@pytest.mark.skipif(not os.path.exists(f"{REFERENCE_DIR}/bridge"), reason="reference CNI plugins absent")
def test_reference_plugins_with_our_config(env):
    """Our bridge delegates to the reference host-local; the reference bridge uses ours."""
    # our bridge, reference host-local: CNI_PATH lookup by type finds /usr/lib/cni first.
    ours = os.path.join(env["bin"], "bridge")
    rc, result = run_plugin(ours, "ADD", env["conf"], container_id="ref1", netns=env["netns"],
                            cni_path=f"{REFERENCE_DIR}:{env['bin']}")
    assert rc == 0, result
    ip1 = result["ips"][0]["address"]
    assert ip1 in in_netns(env["ns"], "ip", "-4", "-o", "addr").stdout
    assert leases(env) == [ip1.split("/")[0]]
    rc, out = run_plugin(ours, "DEL", env["conf"], container_id="ref1", netns=env["netns"],
                         cni_path=f"{REFERENCE_DIR}:{env['bin']}")
    assert rc == 0, out
    assert leases(env) == []

    # reference bridge, our host-local, same network configuration.
    rc, result = run_plugin(f"{REFERENCE_DIR}/bridge", "ADD", env["conf"], container_id="ref2",
                            netns=env["netns"], cni_path=f"{env['bin']}")
    assert rc == 0, result
    ip2 = result["ips"][0]["address"]
    assert ip2.startswith("10.244.250.")
    ping = in_netns(env["ns"], "busybox", "ping", "-c", "2", "-W", "5", GATEWAY)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    rc, out = run_plugin(f"{REFERENCE_DIR}/bridge", "DEL", env["conf"], container_id="ref2",
                         netns=env["netns"], cni_path=f"{env['bin']}")
    assert rc == 0, out
    assert leases(env) == []
