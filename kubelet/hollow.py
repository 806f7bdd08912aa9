"""Hollow nodes: many fake kubelets in one process, so the real control plane
can be driven at 1,000 nodes on one machine.

``python -m kubelet.hollow --kubeconfig K --count N --name-prefix hollow-
[--cpu 4 --memory 16Gi --pods 110]`` registers N Ready Node objects, renews a
coordination.k8s.io/v1 Lease per node in kube-node-lease (as the kubelet's
node lease) every ``--lease-renew-interval`` s, and with ONE watch on bound
pods marks the pods of its nodes Running and Ready (fake podIP from the
node's podCIDR, no containers) and finishes their graceful deletion
(DELETE with gracePeriodSeconds 0). Mirrors kubemark's hollow-node and
kwok's node/pod stages; no container, image or volume is ever touched.
Requests are bounded by ``--concurrency`` in flight, and lease renewals are
spread evenly over the interval so 1,000 nodes make a steady 100 PUT/s.
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import sys
import time

import httpx

from kubeling import daemon
from kubeling.client import ApiError, Client, Informer, KubeconfigError, WorkQueue, meta_key, split_key
from kubelet.nodestatus import LEASE_DURATION, LEASE_NAMESPACE, micro_time, node_labels, node_status
from kubelet.pod_status import qos_class, rfc3339

log = logging.getLogger("hollow")

HOLLOW_LABEL = "kubeling.io/hollow"
# A pod may ask its hollow kubelet to "exit" (kwok's pod stages, reduced): after
# run-seconds (default 1) every container terminates with exit-code; with
# restartPolicy Never (or OnFailure and code 0) the pod becomes Succeeded / Failed.
# Without the annotation, or with restartPolicy Always, pods run forever.
EXIT_CODE_ANNOTATION = "hollow.kubeling.io/exit-code"
RUN_SECONDS_ANNOTATION = "hollow.kubeling.io/run-seconds"
# Pod IPs for nodes nodeipam has not (yet) given a podCIDR: a /24 per node of this process.
FALLBACK_POD_NET = ipaddress.ip_network("100.64.0.0/10")
CIDR_WAIT = 30.0  # seconds a pod waits for its node's podCIDR before a fallback IP


def parse_quantity_ki(text: str) -> int:
    """Kibibytes of a memory quantity (``16Gi``, ``512Mi``, ``1G``, ``1048576``); raises ValueError."""
    units = {"Ki": 1, "Mi": 1024, "Gi": 1024 ** 2, "Ti": 1024 ** 3, "k": 1000 / 1024, "M": 1000 ** 2 / 1024,
             "G": 1000 ** 3 / 1024, "T": 1000 ** 4 / 1024}
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            return int(float(text[:-len(suffix)]) * units[suffix])
    return int(int(text) / 1024)


class PodIPs:
    """Per-node pod IP allocation over the node's podCIDR (or a fallback /24), reusing freed IPs."""

    def __init__(self):
        self.nets: dict[str, ipaddress.IPv4Network] = {}
        self.used: dict[str, set[int]] = {}
        self.by_pod: dict[str, tuple[str, int]] = {}

    def allocate(self, node: str, net: ipaddress.IPv4Network, pod_key: str) -> str:
        """An IP in ``net`` for ``pod_key`` (the same one if it already has one);
        raises ValueError when the node's range is full."""
        if pod_key in self.by_pod and self.by_pod[pod_key][0] == node and self.nets.get(node) == net:
            return str(net.network_address + self.by_pod[pod_key][1])
        if self.nets.get(node) != net:
            self.nets[node], self.used[node] = net, set()
        used = self.used[node]
        for offset in range(2, net.num_addresses - 1):  # .1 is the bridge gateway on a real node
            if offset not in used:
                used.add(offset)
                self.by_pod[pod_key] = (node, offset)
                return str(net.network_address + offset)
        raise ValueError(f"no free pod IP on node {node} ({net})")

    def release(self, pod_key: str) -> None:
        """Free the IP of ``pod_key`` (no-op if it had none)."""
        node, offset = self.by_pod.pop(pod_key, (None, 0))
        if node is not None:
            self.used.get(node, set()).discard(offset)


class HollowNodes:
    """N fake nodes and their kubelet's pod handling, over one client.

    ``await run()`` registers the nodes, then renews leases, reports node
    status and runs pods until cancelled. ``ready`` is True once every node
    is registered and the pod informer has synced.
    """

    def __init__(self, client: Client, names: list[str], *, cpu: str = "4", memory: str = "16Gi",
                 pods: int = 110, node_ip: str = "127.0.0.1", lease_interval: float = 10.0,
                 status_interval: float = 60.0, concurrency: int = 32, workers: int = 16):
        self.client = client
        self.names = list(names)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.cpu, self.memory, self.pods = cpu, memory, pods
        self.node_ip = node_ip
        self.lease_interval = lease_interval
        self.status_interval = status_interval
        # Heartbeats (registration, leases, node status) share ``concurrency``
        # slots; pod work is bounded by ``workers`` alone, so a heartbeat backlog
        # on a slow apiserver never starves pods (nor the reverse).
        self.sem = asyncio.Semaphore(concurrency)
        self.workers = workers
        self.nodes: dict[str, dict] = {}       # last Node written or seen, by name
        self.leases: dict[str, dict] = {}      # last Lease written, by node name
        self.ips = PodIPs()
        self.queue = WorkQueue()
        self.node_informer = Informer(client, "nodes", label_selector=f"{HOLLOW_LABEL}=true")
        self.pod_informer = Informer(client, "pods", field_selector="spec.nodeName!=")
        self.node_informer.add_handlers(on_add=self._on_node, on_update=lambda old, new: self._on_node(new))
        self.pod_informer.add_handlers(on_add=self._on_pod, on_update=lambda old, new: self._on_pod(new),
                                       on_delete=self._on_pod_delete)
        self.registered = False
        self.cidr_wait: dict[str, float] = {}  # pod key -> when it started waiting for a podCIDR
        self.running_pods = 0
        self.started: dict[str, float] = {}  # pod key -> monotonic time we made it Running

    @property
    def ready(self) -> bool:
        """Registered and the pod cache synced (backs /healthz)."""
        return self.registered and self.pod_informer.has_synced

    # -- nodes ---------------------------------------------------------------------------
    def _status(self, name: str, old: dict | None) -> dict:
        info = {"cpu": self.cpu, "memory_ki": parse_quantity_ki(self.memory), "storage_bytes": 100 * 1024 ** 3,
                "kernel": "hollow", "os_image": "kubeling hollow node", "machine_id": name, "boot_id": name}
        status = node_status(info=info, node_ip=self.node_ip, hostname=name, port=0,
                             runtime_version="hollow://0.1", ready=True, not_ready_message="", old=old,
                             now=time.time())
        status["capacity"]["pods"] = str(self.pods)
        status["allocatable"] = dict(status["capacity"])
        status.pop("daemonEndpoints", None)
        return status

    async def _register(self, name: str) -> None:
        labels = {**node_labels(name), HOLLOW_LABEL: "true"}
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": labels,
                             "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
                "spec": {}, "status": self._status(name, None)}
        async with self.sem:
            try:
                self.nodes[name] = await self.client.create("nodes", node)
                return
            except ApiError as e:
                if e.code != 409:
                    raise
            # Already there (a restart): make it ours and Ready again.
            existing = await self.client.get("nodes", name)
            existing["metadata"].setdefault("labels", {}).update(labels)
            existing = await self.client.replace("nodes", existing)
            existing["status"] = self._status(name, existing.get("status"))
            self.nodes[name] = await self.client.replace_status("nodes", existing)

    async def register_all(self) -> None:
        """Create (or adopt) every node, at most ``concurrency`` requests at a time.
        Raises the first ApiError that is not 409 AlreadyExists."""
        await asyncio.gather(*(self._register(n) for n in self.names))
        await asyncio.gather(*(self._renew_lease(n) for n in self.names))
        self.registered = True
        log.info("registered %d hollow nodes (%s..%s)", len(self.names), self.names[0], self.names[-1])

    def _on_node(self, node: dict) -> None:
        name = node["metadata"]["name"]
        if name in self.index:
            self.nodes[name] = node

    async def _renew_lease(self, name: str) -> None:
        """PUT the Lease we wrote last (no GET on the happy path); re-read on 409, create on 404."""
        now = micro_time(time.time())
        spec = {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION, "renewTime": now}
        async with self.sem:
            lease = self.leases.get(name)
            try:
                if lease is None:
                    lease = await self.client.get("leases", name, namespace=LEASE_NAMESPACE)
                self.leases[name] = await self.client.replace("leases", {**lease, "spec": {**lease["spec"], **spec}})
                return
            except ApiError as e:
                self.leases.pop(name, None)
                if e.code == 409:
                    return  # re-read at the next round
                if e.code != 404:
                    raise
            uid = (self.nodes.get(name) or {}).get("metadata", {}).get("uid")
            owner = [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}] if uid else []
            self.leases[name] = await self.client.create("leases", {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": LEASE_NAMESPACE, "ownerReferences": owner},
                "spec": spec}, namespace=LEASE_NAMESPACE)

    async def _spread(self, interval: float, fn, what: str) -> None:
        """Call ``fn(name)`` for every node, evenly spread over ``interval`` s, forever.
        A node whose previous call is still in flight is skipped this round, so a
        slow apiserver never piles up more than one call per node."""
        step = interval / max(1, len(self.names))
        in_flight: dict[str, asyncio.Task] = {}
        try:
            while True:
                start = time.monotonic()
                for i, name in enumerate(self.names):
                    delay = start + i * step - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if name in in_flight:
                        continue
                    task = asyncio.ensure_future(self._guard(fn, name, what))
                    in_flight[name] = task
                    task.add_done_callback(lambda _t, n=name: in_flight.pop(n, None))
                await asyncio.sleep(max(0.0, start + interval - time.monotonic()))
        finally:
            for t in list(in_flight.values()):
                t.cancel()

    @staticmethod
    async def _guard(fn, name: str, what: str) -> None:
        try:
            await fn(name)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # one failed heartbeat must not stop the others
            log.warning("%s of %s failed: %s", what, name, e)

    async def _report_status(self, name: str) -> None:
        """Refresh the node's conditions (lastHeartbeatTime), as the kubelet's status report."""
        old = (self.nodes.get(name) or {}).get("status")
        status = self._status(name, old)
        async with self.sem:
            self.nodes[name] = await self.client.patch("nodes", name, {"status": {"conditions": status["conditions"]}},
                                                       subresource="status")

    # -- pods ----------------------------------------------------------------------------
    def _on_pod(self, pod: dict) -> None:
        if pod["spec"].get("nodeName") not in self.index:
            return
        status = pod.get("status") or {}
        if pod["metadata"].get("deletionTimestamp") or (
                status.get("phase") not in ("Running", "Succeeded", "Failed") or not status.get("podIP")) or (
                status.get("phase") == "Running" and exit_plan(pod) is not None):
            self.queue.add(meta_key(pod))

    def _on_pod_delete(self, pod: dict) -> None:
        self.ips.release(meta_key(pod))
        self.started.pop(meta_key(pod), None)
        self.cidr_wait.pop(meta_key(pod), None)

    def _pod_net(self, node_name: str) -> ipaddress.IPv4Network:
        cidr = ((self.nodes.get(node_name) or {}).get("spec") or {}).get("podCIDR")
        if cidr:
            return ipaddress.ip_network(cidr)
        return _fallback_subnet(self.index[node_name])

    async def _sync_pod(self, key: str) -> None:
        ns, name = split_key(key)
        pod = self.pod_informer.lister.get(name, ns)
        if pod is None or pod["spec"].get("nodeName") not in self.index:
            return
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            try:
                await self.client.delete("pods", name, namespace=ns, grace_period_seconds=0,
                                         preconditions={"uid": meta["uid"]})
            except ApiError as e:
                if e.code not in (404, 409):
                    raise
            self.ips.release(key)
            return
        status = pod.get("status") or {}
        if status.get("phase") == "Running" and status.get("podIP"):
            await self._maybe_exit(key, pod)
            return
        if status.get("phase") in ("Succeeded", "Failed") and status.get("podIP"):
            return
        node_name = pod["spec"]["nodeName"]
        if not ((self.nodes.get(node_name) or {}).get("spec") or {}).get("podCIDR") and \
                time.monotonic() - self.cidr_wait.setdefault(key, time.monotonic()) < CIDR_WAIT:
            # nodeipam normally answers within a second: wait for it, as a kubelet
            # waits for its network, before falling back to a private range.
            self.queue.add_after(key, 0.5)
            return
        self.cidr_wait.pop(key, None)
        ip = self.ips.allocate(node_name, self._pod_net(node_name), key)
        try:
            await self.client.patch("pods", name, {"status": running_status(pod, ip=ip, host_ip=self.node_ip)},
                                    namespace=ns, subresource="status")
            self.running_pods += 1
            self.started[key] = time.monotonic()
        except ApiError as e:
            if e.code != 404:
                raise
        if exit_plan(pod) is not None:
            self.queue.add_after(key, exit_plan(pod)[1])

    async def _maybe_exit(self, key: str, pod: dict) -> None:
        """Terminate the pod's containers as its annotations ask, once run-seconds have passed."""
        plan = exit_plan(pod)
        if plan is None:
            return
        code, run_seconds = plan
        remaining = self.started.setdefault(key, time.monotonic()) + run_seconds - time.monotonic()
        if remaining > 0:
            self.queue.add_after(key, remaining)
            return
        meta = pod["metadata"]
        try:
            await self.client.patch("pods", meta["name"], {"status": terminated_status(pod, exit_code=code)},
                                    namespace=meta["namespace"], subresource="status")
        except ApiError as e:
            if e.code != 404:
                raise

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self._sync_pod(key)
                self.queue.forget(key)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("syncing pod %s failed: %s", key, e)
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)

    async def run(self) -> None:
        """Register, then heartbeat and run pods until cancelled. Raises ApiError if registration fails."""
        informers = [asyncio.ensure_future(self.node_informer.run())]
        tasks: list[asyncio.Future] = []
        try:
            await self.register_all()
            informers.append(asyncio.ensure_future(self.pod_informer.run()))
            tasks = [asyncio.ensure_future(self._spread(self.lease_interval, self._renew_lease, "lease renewal")),
                     asyncio.ensure_future(self._spread(self.status_interval, self._report_status, "status report")),
                     *(asyncio.ensure_future(self._worker()) for _ in range(self.workers))]
            await asyncio.gather(*tasks, *informers)
        finally:
            self.queue.shutdown()
            for t in [*tasks, *informers]:
                t.cancel()
            await asyncio.gather(*tasks, *informers, return_exceptions=True)


def _fallback_subnet(i: int) -> ipaddress.IPv4Network:
    base = int(FALLBACK_POD_NET.network_address) + (i % 16384) * 256
    return ipaddress.ip_network(f"{ipaddress.IPv4Address(base)}/24")


def running_status(pod: dict, *, ip: str, host_ip: str, now: float | None = None) -> dict:
    """A Running, Ready PodStatus for ``pod`` without containers: every container
    running and ready, init containers Completed, PodScheduled kept."""
    ts = rfc3339(now if now is not None else time.time())
    spec = pod.get("spec") or {}
    old = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or []}
    conds = [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": ts}
             for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")]
    conds.append(old.get("PodScheduled") or {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                                             "lastTransitionTime": ts})
    uid = pod["metadata"].get("uid", "")

    def cstatus(c: dict, *, init: bool) -> dict:
        state = ({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": ts, "finishedAt": ts}}
                 if init else {"running": {"startedAt": ts}})
        return {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True,
                "started": not init, "restartCount": 0, "containerID": f"hollow://{uid}/{c['name']}",
                "state": state}
    out = {"phase": "Running", "hostIP": host_ip, "hostIPs": [{"ip": host_ip}], "podIP": ip, "podIPs": [{"ip": ip}],
           "startTime": ts, "qosClass": qos_class(pod), "conditions": conds,
           "containerStatuses": [cstatus(c, init=False) for c in spec.get("containers") or []]}
    if spec.get("initContainers"):
        out["initContainerStatuses"] = [cstatus(c, init=True) for c in spec["initContainers"]]
    return out


def exit_plan(pod: dict) -> tuple[int, float] | None:
    """``(exit_code, run_seconds)`` when the pod's annotations ask its containers to
    exit and its restartPolicy lets the pod end (Never; OnFailure with code 0), else None."""
    ann = pod["metadata"].get("annotations") or {}
    if EXIT_CODE_ANNOTATION not in ann:
        return None
    try:
        code = int(ann[EXIT_CODE_ANNOTATION])
        run_seconds = max(0.0, float(ann.get(RUN_SECONDS_ANNOTATION, "1")))
    except ValueError:
        return None
    policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
    if policy == "Never" or (policy == "OnFailure" and code == 0):
        return code, run_seconds
    return None


def terminated_status(pod: dict, *, exit_code: int, now: float | None = None) -> dict:
    """The status patch of a pod whose containers all exited with ``exit_code``:
    phase Succeeded (0) or Failed, Ready / ContainersReady False (PodCompleted / PodFailed)."""
    ts = rfc3339(now if now is not None else time.time())
    old = pod.get("status") or {}
    reason = "Completed" if exit_code == 0 else "Error"
    statuses = []
    for c in old.get("containerStatuses") or []:
        started = ((c.get("state") or {}).get("running") or {}).get("startedAt", ts)
        statuses.append({**c, "ready": False, "started": False,
                         "state": {"terminated": {"exitCode": exit_code, "reason": reason, "startedAt": started,
                                                  "finishedAt": ts, "containerID": c.get("containerID", "")}}})
    cond_reason = "PodCompleted" if exit_code == 0 else "PodFailed"
    conds = []
    for c in old.get("conditions") or []:
        if c.get("type") in ("Ready", "ContainersReady"):
            c = {**c, "status": "False", "reason": cond_reason, "lastTransitionTime": ts}
        conds.append(c)
    return {"phase": "Succeeded" if exit_code == 0 else "Failed", "conditions": conds,
            "containerStatuses": statuses}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags (``argv`` None = sys.argv[1:]); argparse exits 2 on bad flags."""
    p = argparse.ArgumentParser(prog="python -m kubelet.hollow", description="kubeling hollow nodes")
    p.add_argument("--kubeconfig", required=True, help="kubeconfig to reach the apiserver")
    p.add_argument("--count", type=int, default=1, help="number of nodes (1..5000)")
    p.add_argument("--name-prefix", default="hollow-", help="node names are <prefix><i>, i from --start-index")
    p.add_argument("--start-index", type=int, default=0, help="first node index")
    p.add_argument("--cpu", default="4", help="cpu capacity of each node (cores)")
    p.add_argument("--memory", default="16Gi", help="memory capacity of each node")
    p.add_argument("--pods", type=int, default=110, help="pod capacity of each node")
    p.add_argument("--node-ip", default="127.0.0.1", help="InternalIP and hostIP of every node")
    p.add_argument("--lease-renew-interval", type=float, default=10.0, help="seconds between lease renewals")
    p.add_argument("--node-status-report-frequency", type=float, default=60.0,
                   help="seconds between node status reports")
    p.add_argument("--concurrency", type=int, default=32,
                   help="heartbeat requests (leases, node status) in flight at most")
    p.add_argument("--workers", type=int, default=16, help="pod sync workers (= pod requests in flight at most)")
    p.add_argument("--healthz-port", type=int, default=0, help="serve /healthz and /metrics here (0: off)")
    p.add_argument("--healthz-bind-address", default="127.0.0.1")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def validate(args: argparse.Namespace) -> None:
    """Raise ValueError naming the bad flag."""
    if not 1 <= args.count <= 5000:
        raise ValueError("--count must be between 1 and 5000")
    if args.pods < 1 or args.concurrency < 1 or args.workers < 1:
        raise ValueError("--pods, --concurrency and --workers must be positive")
    if args.lease_renew_interval <= 0 or args.node_status_report_frequency <= 0:
        raise ValueError("--lease-renew-interval and --node-status-report-frequency must be positive")
    parse_quantity_ki(args.memory)
    if float(args.cpu) <= 0:
        raise ValueError("--cpu must be positive")
    ipaddress.ip_address(args.node_ip)


def main(argv: list[str] | None = None) -> int:
    """Run the hollow nodes until SIGTERM/SIGINT; returns the exit code (1 for bad flags or kubeconfig)."""
    args = parse_args(argv)
    daemon.setup_logging("hollow", verbose=args.verbose)
    try:
        validate(args)
        client = Client.from_kubeconfig(args.kubeconfig, user_agent="kubelet-hollow/kubeling")
    except (ValueError, KubeconfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    names = [f"{args.name_prefix}{i}" for i in range(args.start_index, args.start_index + args.count)]

    async def run(stop):
        hollow = HollowNodes(client, names, cpu=args.cpu, memory=args.memory, pods=args.pods, node_ip=args.node_ip,
                             lease_interval=args.lease_renew_interval,
                             status_interval=args.node_status_report_frequency, concurrency=args.concurrency,
                             workers=args.workers)
        coros = [hollow.run()]
        if args.healthz_port:
            coros.append(daemon.serve_health(args.healthz_bind_address, args.healthz_port, lambda: hollow.ready))
        try:
            await daemon.run_until_stopped(stop, *coros)
        finally:
            await client.close()

    try:
        daemon.run(run)
    except (ApiError, httpx.HTTPError) as e:
        log.error("registering hollow nodes failed: %s", e or type(e).__name__)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
