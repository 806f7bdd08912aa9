"""Where a pod's container runs: the kubelet address the apiserver proxies to.

pods/log, pods/exec and metrics.k8s.io all reach a node's kubelet at its
InternalIP (else its first address) and ``status.daemonEndpoints.kubeletEndpoint.Port``.
Mirrors pkg/registry/core/pod/strategy.go (LogLocation, ExecLocation:
container defaulting and checks) and pkg/kubelet/client (GetConnectionInfo).
"""
from __future__ import annotations

from apiserver import errors

DEFAULT_KUBELET_PORT = 10250


def kubelet_host_port(node: dict) -> str | None:
    """``IP:PORT`` (IPv6 in brackets) of ``node``'s kubelet, or None when the node has no address."""
    status = node.get("status") or {}
    addrs = status.get("addresses") or []
    ip = next((a.get("address") for a in addrs if a.get("type") == "InternalIP"), None) \
        or next((a.get("address") for a in addrs), None)
    if not ip:
        return None
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") \
        or DEFAULT_KUBELET_PORT
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def pod_container(pod: dict, container: str | None) -> str:
    """The container a log/exec request addresses: ``container`` if the pod has it (app or
    init container), else the pod's only app container. StatusError 400 with upstream's message otherwise."""
    name = (pod.get("metadata") or {}).get("name", "")
    spec = pod.get("spec") or {}
    names = [c.get("name") for c in spec.get("containers") or []]
    if not container:
        if len(names) != 1:
            raise errors.bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                     f"[{' '.join(names)}]")
        return names[0]
    if container not in names + [c.get("name") for c in spec.get("initContainers") or []]:
        raise errors.bad_request(f"container {container} is not valid for pod {name}")
    return container


async def pod_kubelet(stores: dict, pod: dict) -> str:
    """``IP:PORT`` of the kubelet running ``pod``; StatusError 400 when the pod is not bound
    or its node has no address, 404 when the node is gone."""
    name = (pod.get("metadata") or {}).get("name", "")
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise errors.bad_request(f"pod {name} does not have a host assigned")
    node = await stores[("", "v1", "nodes")].get(None, node_name)
    where = kubelet_host_port(node)
    if not where:
        raise errors.bad_request(f"node {node_name} has no address to reach its kubelet")
    return where
