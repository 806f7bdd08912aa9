"""Registering the Node and keeping its status and Lease fresh.

The control plane knows a node only through what its kubelet writes: the
Node object (labels, addresses, capacity, nodeInfo, the kubelet's port),
its status conditions with a heartbeat every 10 s, and a Lease in
kube-node-lease renewed every 10 s (the cheap liveness signal the node
lifecycle controller watches). Mirrors pkg/kubelet/kubelet_node_status.go
(registerWithAPIServer, tryUpdateNodeStatus), pkg/kubelet/nodestatus/setters.go
and pkg/kubelet/nodelease + component-helpers/apimachinery/lease.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import os
import platform
import time
from typing import Callable

from kubelet.pod_status import rfc3339
from kubeling.client import ApiError, Client

log = logging.getLogger(__name__)

KUBELET_VERSION = "v1.32.0-kubeling"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION = 40
MAX_PODS = 110


def machine_info(root_dir: str) -> dict:
    """What the node offers, from /proc and statvfs: ``cpu`` (cores),
    ``memory_ki``, ``storage_bytes`` (filesystem of ``root_dir``), kernel,
    OS image, machine and boot ids."""
    mem_ki = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_ki = int(line.split()[1])
                break
    os.makedirs(root_dir, exist_ok=True)
    st = os.statvfs(root_dir)
    os_image = "Linux"
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    os_image = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass

    def read(path: str) -> str:
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            return ""
    return {"cpu": os.cpu_count() or 1, "memory_ki": mem_ki, "storage_bytes": st.f_blocks * st.f_frsize,
            "kernel": platform.release(), "os_image": os_image,
            "machine_id": read("/etc/machine-id"), "boot_id": read("/proc/sys/kernel/random/boot_id")}


def node_labels(name: str) -> dict[str, str]:
    """The well-known labels a kubelet sets on its Node."""
    return {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"}


def _condition(ctype: str, ok: bool, reason: str, message: str, now: str, old: dict | None) -> dict:
    status = "True" if ok else "False"
    transition = old.get("lastTransitionTime") if old and old.get("status") == status else None
    return {"type": ctype, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": transition or now}


def node_status(*, info: dict, node_ip: str, hostname: str, port: int, runtime_version: str,
                ready: bool, not_ready_message: str, old: dict | None, now: float,
                memory_pressure: bool = False) -> dict:
    """The full NodeStatus (mirrors the nodestatus setters: MachineInfo,
    NodeAddress, VersionInfo, DaemonEndpoints, ReadyCondition and the pressure conditions)."""
    ts = rfc3339(now)
    old_conds = {c.get("type"): c for c in (old or {}).get("conditions", [])}
    capacity = {"cpu": str(info["cpu"]), "memory": f"{info['memory_ki']}Ki", "pods": str(MAX_PODS),
                "ephemeral-storage": f"{info['storage_bytes'] // 1024}Ki"}
    conds = [
        _condition("MemoryPressure", memory_pressure,
                   "KubeletHasInsufficientMemory" if memory_pressure else "KubeletHasSufficientMemory",
                   "kubelet has insufficient memory available" if memory_pressure
                   else "kubelet has sufficient memory available", ts, old_conds.get("MemoryPressure")),
        _condition("DiskPressure", False, "KubeletHasNoDiskPressure", "kubelet has no disk pressure",
                   ts, old_conds.get("DiskPressure")),
        _condition("PIDPressure", False, "KubeletHasSufficientPID", "kubelet has sufficient PID available",
                   ts, old_conds.get("PIDPressure")),
        _condition("Ready", ready, "KubeletReady" if ready else "KubeletNotReady",
                   "kubelet is posting ready status" if ready else not_ready_message, ts,
                   old_conds.get("Ready")),
    ]
    return {
        "capacity": capacity,
        "allocatable": dict(capacity),
        "conditions": conds,
        "addresses": [{"type": "InternalIP", "address": node_ip}, {"type": "Hostname", "address": hostname}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {"machineID": info["machine_id"], "systemUUID": info["machine_id"],
                     "bootID": info["boot_id"], "kernelVersion": info["kernel"], "osImage": info["os_image"],
                     "containerRuntimeVersion": runtime_version, "kubeletVersion": KUBELET_VERSION,
                     "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"},
    }


# Condition type -> (event reason when "True", when "False"): the kubelet's node status events.
_CONDITION_EVENTS = {"MemoryPressure": ("NodeHasInsufficientMemory", "NodeHasSufficientMemory"),
                     "DiskPressure": ("NodeHasDiskPressure", "NodeHasNoDiskPressure"),
                     "PIDPressure": ("NodeHasInsufficientPID", "NodeHasSufficientPID"),
                     "Ready": ("NodeReady", "NodeNotReady")}


def condition_events(old: dict | None, new: dict) -> list[str]:
    """The event reasons for the conditions of ``new`` (a NodeStatus) whose status differs from
    ``old``'s, in condition order (mirrors the nodestatus setters' recordEventFunc calls): a new
    pressure condition counts as a change from Unknown, Ready only when it existed before."""
    before = {c.get("type"): c.get("status") for c in (old or {}).get("conditions") or []}
    out = []
    for c in new.get("conditions") or []:
        ctype, reasons = c.get("type"), _CONDITION_EVENTS.get(c.get("type"))
        if not reasons or (ctype == "Ready" and ctype not in before):
            continue
        if c.get("status") != before.get(ctype, "Unknown"):
            out.append(reasons[0] if c.get("status") == "True" else reasons[1])
    return out


def micro_time(ts: float) -> str:
    """MicroTime format of Lease renewTime: ``2024-05-01T12:00:00.123456Z``."""
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NodeStatusManager:
    """Registers node ``name`` and keeps its status and Lease fresh.

    ``readiness()`` returns ``(ready, message)``; ``runtime_version`` is set
    by the kubelet once the runtime answered (e.g. ``docker://20.10.24``).
    ``node`` holds the last Node read or written (its spec.podCIDR matters).
    """

    def __init__(self, client: Client, *, name: str, node_ip: str, port: int, root_dir: str,
                 readiness: Callable[[], tuple[bool, str]], interval: float = 10.0,
                 recorder: Callable[[dict, str, str, str], None] | None = None,
                 pressure: Callable[[], dict[str, bool]] | None = None):
        self.client = client
        self.pressure = pressure  # condition type -> True under pressure (the eviction manager)
        self.recorder = recorder
        self.name = name
        self.node_ip = node_ip
        self.port = port
        self.root_dir = root_dir
        self.readiness = readiness
        self.interval = interval
        self.runtime_version = ""
        self.node: dict | None = None
        self.info = machine_info(root_dir)
        self.kick = asyncio.Event()  # set to send a status update before the next tick

    def _status(self, old: dict | None) -> dict:
        ready, message = self.readiness()
        pressure = self.pressure() if self.pressure else {}
        return node_status(info=self.info, node_ip=self.node_ip, hostname=self.name, port=self.port,
                           runtime_version=self.runtime_version, ready=ready, not_ready_message=message,
                           old=old, now=time.time(), memory_pressure=bool(pressure.get("MemoryPressure")))

    async def register(self) -> dict:
        """Create the Node, or update labels and status of an existing one
        (mirrors registerWithAPIServer + reconcile). Raises ApiError."""
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name, "labels": node_labels(self.name),
                             "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
                "spec": {}, "status": self._status(None)}
        try:
            self.node = await self.client.create("nodes", node)
            log.info("registered node %s", self.name)
            for reason in condition_events(None, node["status"]):
                self._event(reason, f"Node {self.name} status is now: {reason}")
        except ApiError as e:
            if e.code != 409:
                raise
            existing = await self.client.get("nodes", self.name)
            labels = existing["metadata"].setdefault("labels", {})
            if any(labels.get(k) != v for k, v in node_labels(self.name).items()):
                labels.update(node_labels(self.name))
                existing = await self.client.replace("nodes", existing)
            self.node = existing
            log.info("node %s already registered; updating it", self.name)
        self._event("Starting", "Starting kubelet.")
        await self.update_status()
        return self.node

    def _event(self, reason: str, message: str) -> None:
        """An Event about this node; as upstream's nodeRef its uid is the node name."""
        if self.recorder is not None:
            ref = {"kind": "Node", "apiVersion": "v1", "metadata": {"name": self.name, "uid": self.name}}
            self.recorder(ref, "Normal", reason, message)

    async def update_status(self, *, attempts: int = 5) -> dict:
        """Read the Node, set a fresh status, write it (retry on 409). Raises ApiError."""
        for i in range(attempts):
            node = await self.client.get("nodes", self.name)
            old = node.get("status")
            node["status"] = self._status(old)
            try:
                self.node = await self.client.replace_status("nodes", node)
                for reason in condition_events(old, node["status"]):
                    self._event(reason, f"Node {self.name} status is now: {reason}")
                return self.node
            except ApiError as e:
                if e.code != 409 or i == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    async def renew_lease(self) -> None:
        """Create or renew Lease kube-node-lease/<node> (holder = node, 40 s). Raises ApiError."""
        now = micro_time(time.time())
        try:
            lease = await self.client.get("leases", self.name, namespace=LEASE_NAMESPACE)
        except ApiError as e:
            if e.code != 404:
                raise
            lease = None
        if lease is not None:
            lease.setdefault("spec", {}).update(holderIdentity=self.name, leaseDurationSeconds=LEASE_DURATION,
                                                renewTime=now)
            await self.client.replace("leases", lease)
            return
        owner = []
        if self.node and self.node.get("metadata", {}).get("uid"):
            owner = [{"apiVersion": "v1", "kind": "Node", "name": self.name,
                      "uid": self.node["metadata"]["uid"]}]
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": self.name, "namespace": LEASE_NAMESPACE, "ownerReferences": owner},
                 "spec": {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_DURATION,
                          "renewTime": now}}
        try:
            await self.client.create("leases", lease, namespace=LEASE_NAMESPACE)
        except ApiError as e:
            if e.code != 404:
                raise
            # The namespace does not exist yet (no one created it): make it, then retry once.
            try:
                await self.client.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                        "metadata": {"name": LEASE_NAMESPACE}})
            except ApiError as e2:
                if e2.code != 409:
                    raise
            await self.client.create("leases", lease, namespace=LEASE_NAMESPACE)

    async def run(self) -> None:
        """Heartbeat (status + lease) every ``interval`` s, or sooner when ``kick`` is set."""
        while True:
            for what, fn in (("node status", self.update_status), ("lease", self.renew_lease)):
                try:
                    await fn()
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # keep heartbeating whatever one attempt hit
                    log.warning("updating %s failed: %s", what, e)
            self.kick.clear()
            try:
                await asyncio.wait_for(self.kick.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
