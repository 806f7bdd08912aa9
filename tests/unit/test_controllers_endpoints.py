"""Endpoints computation: ready and not-ready addresses, named target ports,
pods left out, and repacking by port set (endpoints controller)."""
from controllers.endpoints import compute_subsets, find_port
from controllers.nodeipam import CIDRSet, CIDRSetFull

import pytest


def pod(name, ip, *, ready=True, port_name="http", port=8080, deleting=False, node="n1"):
    p = {"metadata": {"name": name, "namespace": "default", "uid": f"u-{name}", "labels": {"app": "web"}},
         "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [
             {"name": port_name, "containerPort": port, "protocol": "TCP"}]}]},
         "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
    if ip:
        p["status"]["podIP"] = ip
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return p


SVC = {"metadata": {"name": "web", "namespace": "default"},
       "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http",
                                                       "protocol": "TCP"}]}}


def test_find_port():
    p = pod("a", "10.0.0.1")
    assert find_port(p, {"port": 80, "targetPort": "http"}) == 8080
    assert find_port(p, {"port": 80, "targetPort": 9090}) == 9090
    assert find_port(p, {"port": 80}) == 80
    assert find_port(p, {"port": 80, "targetPort": "http", "protocol": "UDP"}) is None
    assert find_port(p, {"port": 80, "targetPort": "nope"}) is None


def test_ready_and_not_ready_addresses_and_skipped_pods():
    pods = [pod("b", "10.0.0.10"), pod("a", "10.0.0.9", ready=False), pod("noip", None),
            pod("gone", "10.0.0.11", deleting=True)]
    [subset] = compute_subsets(SVC, pods)
    assert [a["ip"] for a in subset["addresses"]] == ["10.0.0.10"]
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["10.0.0.9"]
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert subset["addresses"][0]["targetRef"] == {"kind": "Pod", "namespace": "default", "name": "b",
                                                   "uid": "u-b"}
    assert subset["addresses"][0]["nodeName"] == "n1"


def test_pods_with_different_ports_get_separate_subsets():
    subsets = compute_subsets(SVC, [pod("a", "10.0.0.2"), pod("b", "10.0.0.1", port=9090), pod("c", "10.0.0.3")])
    by_port = {s["ports"][0]["port"]: [a["ip"] for a in s["addresses"]] for s in subsets}
    assert by_port == {8080: ["10.0.0.2", "10.0.0.3"], 9090: ["10.0.0.1"]}


def test_publish_not_ready_and_headless_without_ports():
    svc = {**SVC, "spec": {**SVC["spec"], "publishNotReadyAddresses": True}}
    [subset] = compute_subsets(svc, [pod("a", "10.0.0.1", ready=False)])
    assert "notReadyAddresses" not in subset and subset["addresses"][0]["ip"] == "10.0.0.1"
    headless = {"metadata": SVC["metadata"], "spec": {"selector": {"app": "web"}, "clusterIP": "None"}}
    assert compute_subsets(headless, [pod("a", "10.0.0.1")])[0].get("ports") is None


def test_cidr_set_allocates_in_order_recovers_and_releases():
    s = CIDRSet("10.244.0.0/22", 24)
    s.occupy("10.244.1.0/24")
    assert [s.allocate_next() for _ in range(3)] == ["10.244.0.0/24", "10.244.2.0/24", "10.244.3.0/24"]
    with pytest.raises(CIDRSetFull):
        s.allocate_next()
    s.release("10.244.2.0/24")
    assert s.allocate_next() == "10.244.2.0/24"
    with pytest.raises(ValueError):
        s.occupy("10.245.0.0/24")
    with pytest.raises(ValueError):
        CIDRSet("10.244.0.0/16", 16)
