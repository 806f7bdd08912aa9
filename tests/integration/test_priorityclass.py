"""scheduling.k8s.io/v1 PriorityClasses and the Priority admission plugin, with the real kubectl against
etcd + apiserver (support.control_plane): the system classes exist, ``kubectl create priorityclass``
works, a pod's class becomes its spec.priority, an unknown class or a mismatched priority is Forbidden,
one globalDefault at most, value immutable, the reserved names and bounds refused."""
from __future__ import annotations

import os
import shutil
import subprocess

import httpx
import pytest

import support

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None or not os.path.exists(support.ETCD),
                                reason="needs /usr/bin/kubectl and etcd 3.4")
PCS = "/apis/scheduling.k8s.io/v1/priorityclasses"


@pytest.fixture(scope="module")
def cp(tmp_path_factory):
    with support.control_plane(tmp_path_factory.mktemp("pc"), "etcd") as cp:
        yield cp


def kubectl(cp, *args):
    return subprocess.run([KUBECTL, "--kubeconfig", str(cp.kubeconfig), *args], capture_output=True, text=True,
                          timeout=30)


def pod(name, **spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}], **spec}}


def test_priority_classes_end_to_end(cp):
    http = httpx.Client(base_url=cp.server, trust_env=False, timeout=10)
    support.wait_for("system classes", lambda: http.get(f"{PCS}/system-node-critical").status_code == 200, 30)
    assert http.get(f"{PCS}/system-cluster-critical").json()["value"] == 2000000000

    r = kubectl(cp, "create", "priorityclass", "high", "--value=1000", "--description=important")
    assert r.returncode == 0 and r.stdout.strip() == "priorityclass.scheduling.k8s.io/high created", r.stderr
    r = kubectl(cp, "create", "priorityclass", "zero", "--value=0", "--preemption-policy=Never")
    assert r.returncode == 0, r.stderr
    assert http.get(f"{PCS}/zero").json()["value"] == 0
    got = kubectl(cp, "get", "pc", "high", "-o", "jsonpath={.value} {.preemptionPolicy} {.description}")
    assert got.stdout == "1000 PreemptLowerPriority important"

    created = http.post("/api/v1/namespaces/default/pods", json=pod("p1", priorityClassName="high"))
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["priority"] == 1000
    assert created.json()["spec"]["preemptionPolicy"] == "PreemptLowerPriority"
    plain = http.post("/api/v1/namespaces/default/pods", json=pod("p2")).json()
    assert plain["spec"]["priority"] == 0 and "priorityClassName" not in plain["spec"]

    unknown = http.post("/api/v1/namespaces/default/pods", json=pod("p3", priorityClassName="nope"))
    assert unknown.status_code == 403 and "no PriorityClass with name nope was found" in unknown.json()["message"]
    mismatch = http.post("/api/v1/namespaces/default/pods", json=pod("p4", priorityClassName="high", priority=5))
    assert mismatch.status_code == 403 and "computed 1000" in mismatch.json()["message"]

    assert kubectl(cp, "create", "priorityclass", "dflt", "--value=10", "--global-default=true").returncode == 0
    defaulted = http.post("/api/v1/namespaces/default/pods", json=pod("p5")).json()
    assert (defaulted["spec"]["priority"], defaulted["spec"]["priorityClassName"]) == (10, "dflt")
    second = kubectl(cp, "create", "priorityclass", "dflt2", "--value=11", "--global-default=true")
    assert second.returncode != 0 and "already marked as default" in second.stderr

    pc = http.get(f"{PCS}/high").json()
    pc["value"] = 2000
    changed = http.put(f"{PCS}/high", json=pc)
    assert changed.status_code == 422 and "value: Forbidden: may not be changed" in changed.json()["message"]
    for body, text in (({"value": 2000000001}, "maximum allowed value"),
                       ({"value": 1, "metadata": {"name": "system-mine"}}, "reserved"),
                       ({}, "value: Required value")):
        obj = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "bad"}, **body}
        r = http.post(PCS, json=obj)
        assert r.status_code == 422 and text in r.json()["message"], r.text
