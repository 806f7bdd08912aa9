"""Service/Endpoints -> proxy records (proxy.serviceport) and kube-proxy flag parsing."""
from __future__ import annotations

import argparse

import pytest

from proxy.server import build_parser, parse_address, parse_duration
from proxy.serviceport import Endpoint, ServicePortName, build_endpoints_map, build_service_map


def test_service_ports_defaults_and_skips():
    svcs = [
        {"metadata": {"namespace": "ns", "name": "a"},
         "spec": {"clusterIP": "10.96.0.5", "ports": [{"port": 80}, {"name": "x", "port": 81, "protocol": "UDP"},
                                                      {"name": "bad", "port": 82, "protocol": "ICMP"}]}},
        {"metadata": {"namespace": "ns", "name": "headless"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}},
        {"metadata": {"namespace": "ns", "name": "v6"}, "spec": {"clusterIP": "fd00::1", "ports": [{"port": 1}]}},
        {"metadata": {"namespace": "ns", "name": "np"},
         "spec": {"clusterIP": "10.96.0.6", "type": "NodePort", "sessionAffinity": "ClientIP",
                  "ports": [{"port": 80, "nodePort": 30001}]}},
    ]
    m = build_service_map(svcs)
    assert set(m) == {ServicePortName("ns", "a", "", "TCP"), ServicePortName("ns", "a", "x", "UDP"),
                      ServicePortName("ns", "np", "", "TCP")}
    assert str(ServicePortName("ns", "a", "", "TCP")) == "ns/a"
    assert str(ServicePortName("ns", "a", "x", "UDP")) == "ns/a:x"
    np = m[ServicePortName("ns", "np", "", "TCP")]
    assert (np.node_port, np.affinity_timeout) == (30001, 10800)
    assert m[ServicePortName("ns", "a", "", "TCP")].node_port == 0


def test_endpoints_ready_only_sorted_deduplicated_by_port_name():
    eps = [{"metadata": {"namespace": "ns", "name": "a"},
            "subsets": [
                {"addresses": [{"ip": "10.244.0.10"}, {"ip": "10.244.0.9"}],
                 "notReadyAddresses": [{"ip": "10.244.0.11"}],
                 "ports": [{"name": "http", "port": 8080}, {"name": "dns", "port": 53, "protocol": "UDP"}]},
                {"addresses": [{"ip": "10.244.0.9"}, {"ip": "10.244.1.2"}], "ports": [{"name": "http", "port": 8080}]},
            ]}]
    m = build_endpoints_map(eps)
    assert m[ServicePortName("ns", "a", "http", "TCP")] == [
        Endpoint("10.244.0.9", 8080), Endpoint("10.244.0.10", 8080), Endpoint("10.244.1.2", 8080)]
    assert m[ServicePortName("ns", "a", "dns", "UDP")] == [Endpoint("10.244.0.9", 53), Endpoint("10.244.0.10", 53)]


@pytest.mark.parametrize("text,seconds", [("1s", 1.0), ("500ms", 0.5), ("1m30s", 90.0), ("2", 2.0), ("1h", 3600.0)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1x", "s", "1s junk"])
def test_parse_duration_rejects(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


def test_parse_address_and_flags():
    assert parse_address("127.0.0.1:10256") == ("127.0.0.1", 10256)
    assert parse_address(":10249") == ("0.0.0.0", 10249)
    assert parse_address("") is None
    with pytest.raises(argparse.ArgumentTypeError):
        parse_address("localhost")
    args = build_parser().parse_args(
        ["--kubeconfig", "k", "--hostname-override", "node1", "--cluster-cidr", "10.244.0.0/16",
         "--healthz-bind-address", "127.0.0.1:10256", "--metrics-bind-address", "127.0.0.1:10249",
         "--min-sync-period", "1s", "--sync-period", "30s"])
    assert (args.cluster_cidr, args.min_sync_period, args.sync_period, args.chain_prefix) == \
        ("10.244.0.0/16", 1.0, 30.0, "KUBE")


def test_bad_cluster_cidr_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["--cluster-cidr", "10.244.0.0/33"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--cluster-cidr" in err and "invalid CIDR '10.244.0.0/33'" in err


def test_label_selectors_as_upstream():
    from proxy.server import label_selectors
    assert label_selectors() == ("!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless",) * 2
    assert label_selectors("kltest")[0] == \
        "service.kubernetes.io/service-proxy-name=kltest,!service.kubernetes.io/headless"


def test_proxy_mode_ipvs_fails_with_one_line_without_kernel_support(tmp_path, capsys):
    """This kernel has no IPVS (no /proc/net/ip_vs, no loadable modules): --proxy-mode=ipvs
    exits 1 with one clear line instead of starting."""
    from proxy.server import check_proxy_mode, main
    assert check_proxy_mode("iptables") is None
    assert "no IPVS" in check_proxy_mode("ipvs", ipvs_proc=str(tmp_path / "missing"))
    (tmp_path / "ip_vs").write_text("")
    assert "only the iptables mode" in check_proxy_mode("ipvs", ipvs_proc=str(tmp_path / "ip_vs"))
    if not __import__("os").path.exists("/proc/net/ip_vs"):
        assert main(["--proxy-mode", "ipvs", "--kubeconfig", str(tmp_path / "kc")]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--proxy-mode=ipvs" in err


def test_nodeport_addresses_flag_and_selection():
    from proxy.nodeport_addresses import NodePortAddresses
    args = build_parser().parse_args(["--nodeport-addresses", "10.250.0.0/24,127.0.0.0/8",
                                      "--iptables-localhost-nodeports=false"])
    assert args.nodeport_addresses == ("10.250.0.0/24", "127.0.0.0/8")
    assert args.iptables_localhost_nodeports is False
    npa = NodePortAddresses(args.nodeport_addresses)
    assert not npa.match_all
    assert npa.select(["192.0.2.2", "10.250.0.12", "127.0.0.1", "10.250.0.12", "fe80::1"]) == \
        ["10.250.0.12", "127.0.0.1"]
    assert NodePortAddresses().match_all and NodePortAddresses(["0.0.0.0/0"]).match_all
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--iptables-localhost-nodeports", "maybe"])
