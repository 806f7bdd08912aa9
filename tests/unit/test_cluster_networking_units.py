"""Pure pieces of cluster networking: host-gw's desired routes, the NodePort range, the launcher's node layout."""
import random

import pytest

from apiserver.registry import portallocator
from cni.hostgw import desired_routes, node_address
from kubeling import config


def node(name, cidr, ip):
    return {"metadata": {"name": name}, "spec": {"podCIDR": cidr} if cidr else {},
            "status": {"addresses": [{"type": "Hostname", "address": name}] +
                       ([{"type": "InternalIP", "address": ip}] if ip else [])}}


def test_desired_routes_one_per_other_node_via_its_internal_ip():
    nodes = [node("node1", "10.244.0.0/24", "10.250.0.11"), node("node2", "10.244.1.0/24", "10.250.0.12"),
             node("node3", "10.244.2.0/24", "10.250.0.13"),
             node("nocidr", None, "10.250.0.14"), node("noip", "10.244.4.0/24", None),
             node("bad", "10.244.5.0/33", "10.250.0.15")]
    assert desired_routes(nodes, self_name="node1") == {"10.244.1.0/24": "10.250.0.12",
                                                       "10.244.2.0/24": "10.250.0.13"}
    # A host that is not a node routes to every node.
    assert set(desired_routes(nodes, self_name="")) == {"10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"}
    assert node_address(node("x", None, None)) is None


def test_port_range_check_and_pick():
    r = portallocator.PortRange("30000-30002", rng=random.Random(1))
    r.check(30000)
    r.check(30002)
    with pytest.raises(portallocator.AllocationError, match="valid range. The range of valid ports is 30000-30002"):
        r.check(30003)
    assert r.pick({30000, 30001}) == 30002
    with pytest.raises(portallocator.AllocationError, match="range is full"):
        r.pick({30000, 30001, 30002})
    with pytest.raises(ValueError):
        portallocator.PortRange("5-x")
    keys = [portallocator.reservation_key(p) for p in (30000, 31000)] + [portallocator.RESERVATION_PREFIX + "junk"]
    assert portallocator.taken_from_keys(keys) == {30000, 31000}


def test_underlay_addresses():
    assert config.underlay_ip(1) == "10.250.0.11" and config.underlay_ip(3) == "10.250.0.13"
    with pytest.raises(ValueError):
        config.underlay_ip(0)


def test_cluster_layout_single_and_netns(tmp_path, monkeypatch):
    from deploy.cluster import Cluster

    monkeypatch.delenv("NODES", raising=False)
    one = Cluster(tmp_path)
    assert [(n.name, n.ip, n.netns) for n in one.nodes] == [("node1", "127.0.0.1", False)]
    three = Cluster(tmp_path, nodes=3)
    assert [(n.name, n.ip, n.netns) for n in three.nodes] == [
        ("node1", "10.250.0.11", True), ("node2", "10.250.0.12", True), ("node3", "10.250.0.13", True)]
    names = [c.name for c in three.components()]
    assert names.count("kubelet-node3") == 1 and "hostgw-node2" in names and "hostgw-host" in names
    kubelet = next(c for c in three.components() if c.name == "kubelet-node2")
    assert kubelet.argv[:3] == ["nsenter", "--net=/run/netns/kl-node2", "--"]
    assert "--node-ip" in kubelet.argv and "10.250.0.12" in kubelet.argv
    monkeypatch.setenv("NODES", "x")
    with pytest.raises(ValueError, match="NODES must be a number"):
        Cluster(tmp_path)


def test_proxy_mode_from_flag_env_or_the_last_up(tmp_path, monkeypatch):
    from deploy.cluster import Cluster

    monkeypatch.delenv("PROXY_MODE", raising=False)
    monkeypatch.delenv("NODES", raising=False)
    assert Cluster(tmp_path).proxy_mode == "iptables"
    c = Cluster(tmp_path, proxy_mode="nftables")
    proxy = next(x for x in c.components() if x.name == "kube-proxy-node1")
    assert proxy.argv[proxy.argv.index("--proxy-mode") + 1] == "nftables"
    c.secure = False
    c.write_state()
    assert Cluster(tmp_path).proxy_mode == "nftables"  # `make down` / `status` use what `up` ran
    monkeypatch.setenv("PROXY_MODE", "ipvs")
    with pytest.raises(ValueError, match="PROXY_MODE must be one of iptables, nftables"):
        Cluster(tmp_path)


def test_vm_units_run_the_launchers_command_lines(tmp_path):
    from deploy import units

    worker = units.vm_cluster("worker", home=tmp_path / "h", address="10.0.0.11", control_plane="10.0.0.10",
                              node_cidr="10.0.0.0/24", name="worker1")
    paths = units.write_units(worker, tmp_path / "u")
    names = sorted(p.name for p in paths)
    assert names == ["kubeling-cri-shim-worker1.service", "kubeling-hostgw-worker1.service",
                     "kubeling-kube-proxy-worker1.service", "kubeling-kubelet-worker1.service"]
    kubelet = (tmp_path / "u" / "kubeling-kubelet-worker1.service").read_text()
    assert "Restart=always" in kubelet and "--node-ip 10.0.0.11" in kubelet
    assert "After=network-online.target docker.service kubeling-cri-shim-worker1.service" in kubelet
    assert worker.node_server == "https://10.0.0.10:6443"
    assert "--tls-cert-file" in kubelet and "--client-ca-file" in kubelet
    proxy = (tmp_path / "u" / "kubeling-kube-proxy-worker1.service").read_text()
    assert "--pod-egress-cidrs 10.0.0.0/24" in proxy
    cp = units.vm_cluster("control-plane", home=tmp_path / "c", address="10.0.0.10", control_plane="10.0.0.10",
                          node_cidr="10.0.0.0/24")
    cp_names = {c.name for c in cp.control_plane_components()}
    assert {"etcdlite", "kube-apiserver", "cluster-dns", "hostgw-host"} <= cp_names
    with pytest.raises(ValueError):
        units.vm_cluster("worker", home=tmp_path, address="10.0.0.11", control_plane="10.0.0.10",
                         node_cidr="10.0.0.0/24")
