"""The scheduler as a real process against a real apiserver over etcdlite,
with fake Node objects (made through the API, no kubelet): upstream's
FailedScheduling message and PodScheduled=False, the queue moving a pod back
when a fitting node is added, required anti-affinity spreading replicas,
preemption of a lower-priority pod, and pods for another scheduler left alone.
"""
from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest

import support
from kubeling.client import ApiError, Client

HOST = "kubernetes.io/hostname"


@pytest.fixture(scope="module")
def plane():
    """etcdlite, apiserver and the scheduler on free loopback ports."""
    tmp = Path(tempfile.mkdtemp(prefix="kubeling-sched-"))
    try:
        with support.control_plane(tmp, store="etcdlite", user="admin") as cp:
            port = support.free_port()
            cp.procs.spawn("scheduler", [
                sys.executable, "-m", "scheduler", "--kubeconfig", str(cp.kubeconfig), "--bind-address",
                "127.0.0.1", "--secure-port", str(port), "--leader-elect=false"])
            cp.procs.wait_ready("scheduler", url=f"http://127.0.0.1:{port}/healthz")
            cp.extra["scheduler_metrics"] = f"http://127.0.0.1:{port}/metrics"
            yield cp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fake_node(name: str, *, cpu: str = "4", labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {HOST: name, **(labels or {})}},
            "spec": {}, "status": {
                "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}


def a_pod(name: str, *, cpu: str = "100m", labels: dict | None = None, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.35",
                                     "resources": {"requests": {"cpu": cpu}}}], **spec}}


async def eventually(fn, *, timeout: float = 20.0, what: str = "condition"):
    """Poll the coroutine function ``fn`` until truthy; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await fn()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


@pytest.fixture
async def env(plane):
    """A client, a fresh namespace, and no nodes left over from another test."""
    client = Client.from_kubeconfig(plane.kubeconfig)
    ns = "s-" + uuid.uuid4().hex[:6]
    await client.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    try:
        yield client, ns
    finally:
        for n in (await client.list("nodes"))["items"]:
            await client.delete("nodes", n["metadata"]["name"])
        for p in (await client.list("pods", namespace=ns))["items"]:
            try:
                await client.delete("pods", p["metadata"]["name"], namespace=ns, grace_period_seconds=0)
            except ApiError:
                pass
        await client.close()


async def metric(url: str, name: str, **labels) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` on a /metrics page."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(url)).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def node_of(client, ns, name):
    return ((await client.get("pods", name, namespace=ns)).get("spec") or {}).get("nodeName")


async def scheduled_condition(client, ns, name):
    p = await client.get("pods", name, namespace=ns)
    return next((c for c in (p.get("status") or {}).get("conditions") or [] if c["type"] == "PodScheduled"), None)


async def events(client, ns, reason, name, message=None):
    return [e for e in (await client.list("events", namespace=ns))["items"]
            if e["reason"] == reason and e["involvedObject"]["name"] == name
            and (message is None or e["message"] == message)]


async def test_unschedulable_then_scheduled_when_a_fitting_node_arrives(env, plane):
    client, ns = env
    metrics = plane.extra["scheduler_metrics"]
    await client.create("nodes", fake_node("small-ssd", cpu="1", labels={"disk": "ssd"}))
    await client.create("nodes", fake_node("big-hdd-1", labels={"disk": "hdd"}))
    await client.create("nodes", fake_node("big-hdd-2", labels={"disk": "hdd"}))
    await client.create("pods", a_pod("db", cpu="2", nodeSelector={"disk": "ssd"}), namespace=ns)

    expected = ("0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node "
                "affinity/selector. preemption: 0/3 nodes are available: 1 No preemption victims found for "
                "incoming pod, 2 Preemption is not helpful for scheduling..")

    # The pod may be tried before the scheduler's node informer has all three nodes
    # (two watches, no order between them): wait for the attempt that saw them all.
    async def unschedulable():
        cond = await scheduled_condition(client, ns, "db")
        return cond if cond and cond["status"] == "False" and cond["message"] == expected else None

    cond = await eventually(unschedulable, what="PodScheduled=False with the 3-node message")
    assert cond["reason"] == "Unschedulable"
    [event] = await eventually(lambda: events(client, ns, "FailedScheduling", "db", expected),
                               what="FailedScheduling")
    assert event["type"] == "Warning"

    # The pod now waits in unschedulablePods; a node that fits must bring it back well
    # before the 5-minute flush.
    moved_before = await metric(metrics, "scheduler_queue_incoming_pods_total", event="NodeAdd")
    added = time.monotonic()
    await client.create("nodes", fake_node("big-ssd", labels={"disk": "ssd"}))
    assert await eventually(lambda: node_of(client, ns, "db"), what="db bound") == "big-ssd"
    assert time.monotonic() - added < 15
    # It was the NodeAdd event that moved it out of unschedulablePods.
    assert await metric(metrics, "scheduler_queue_incoming_pods_total", event="NodeAdd") > moved_before
    [event] = await eventually(lambda: events(client, ns, "Scheduled", "db"), what="Scheduled event")
    assert (event["type"], event["message"]) == ("Normal", f"Successfully assigned {ns}/db to big-ssd")
    assert (await scheduled_condition(client, ns, "db"))["status"] == "True"  # set by pods/binding


async def test_required_anti_affinity_spreads_three_replicas(env):
    client, ns = env
    for i in range(3):
        await client.create("nodes", fake_node(f"n{i}"))
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": HOST}]}}
    for i in range(4):
        await client.create("pods", a_pod(f"web-{i}", labels={"app": "web"}, affinity=anti), namespace=ns)

    async def placements():
        nodes = [await node_of(client, ns, f"web-{i}") for i in range(4)]
        return nodes if sum(1 for n in nodes if n) >= 3 else None

    nodes = await eventually(placements, what="three replicas bound")
    assert sorted(n for n in nodes if n) == ["n0", "n1", "n2"]
    pending = f"web-{nodes.index(None)}"
    expected = ("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. "
                "preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod..")
    await eventually(lambda: events(client, ns, "FailedScheduling", pending, expected), what="FailedScheduling")


async def test_higher_priority_pod_preempts_and_takes_the_node(env):
    client, ns = env
    await client.create("nodes", fake_node("only", cpu="1"))
    await client.create("pods", a_pod("low", cpu="800m", priority=0), namespace=ns)
    assert await eventually(lambda: node_of(client, ns, "low"), what="low bound") == "only"
    # As users do: a PriorityClass, which the Priority admission plugin turns into spec.priority.
    await client.create("priorityclasses", {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                                            "metadata": {"name": f"high-{ns}"}, "value": 1000})
    created = await client.create("pods", a_pod("high", cpu="800m", priorityClassName=f"high-{ns}"), namespace=ns)
    assert created["spec"]["priority"] == 1000

    async def victim_terminating():
        try:
            p = await client.get("pods", "low", namespace=ns)
        except ApiError as e:
            return e.code == 404
        return bool(p["metadata"].get("deletionTimestamp"))

    await eventually(victim_terminating, what="the low-priority pod being deleted")

    async def nominated():
        return (await client.get("pods", "high", namespace=ns))["status"].get("nominatedNodeName")

    assert await eventually(nominated, what="high's nominatedNodeName") == "only"
    low = await client.get("pods", "low", namespace=ns)
    disruption = [c for c in low["status"]["conditions"] if c["type"] == "DisruptionTarget"]
    assert disruption and disruption[0]["reason"] == "PreemptionByScheduler"
    # Play the kubelet: finish the graceful deletion.
    await client.delete("pods", "low", namespace=ns, grace_period_seconds=0)
    assert await eventually(lambda: node_of(client, ns, "high"), what="high bound") == "only"
    [event] = await eventually(lambda: events(client, ns, "Preempted", "low"), what="Preempted event")
    assert event["message"].endswith("on node only")


async def test_pods_for_another_scheduler_are_left_alone(env):
    client, ns = env
    await client.create("nodes", fake_node("n0"))
    await client.create("pods", a_pod("mine"), namespace=ns)
    await client.create("pods", a_pod("theirs", schedulerName="other-scheduler"), namespace=ns)
    assert await eventually(lambda: node_of(client, ns, "mine"), what="mine bound") == "n0"
    await asyncio.sleep(1)
    assert await node_of(client, ns, "theirs") is None
    assert await events(client, ns, "FailedScheduling", "theirs") == []
