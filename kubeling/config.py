"""Where a local cluster keeps its state, and the cluster-wide defaults.

All state of a local cluster lives under one directory (``.cluster/`` at the
repository root, or ``$KUBELING_HOME``): pki/, etcd data, logs/, kubeconfigs,
per-node directories (CRI socket, CNI config, pod logs), pid files. The
launcher, the CLI and the tests find it through ``home()``.
"""
from __future__ import annotations

import os
import pathlib

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/12"
NODE_CIDR_MASK_SIZE = 24
APISERVER_PORT = 6443
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
SCHEDULER_PORT = 10259
CONTROLLER_MANAGER_PORT = 10257
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
PROXY_HEALTHZ_PORT = 10256
PROXY_METRICS_PORT = 10249
HOSTGW_HEALTHZ_PORT = 10252
DNS_HEALTH_PORT = 8080
DNS_METRICS_PORT = 9153
DASHBOARD_PORT = 8001
BRIDGE_NAME = "kubeling0"
# The node underlay of a local cluster: a bridge in the host's network
# namespace joining the node netns of ``make up NODES=N`` (N >= 2). The host
# (control plane, cluster DNS) holds the first address, node i the (10+i)th.
UNDERLAY_BRIDGE = "kl-underlay"
UNDERLAY_CIDR = "10.250.0.0/24"
UNDERLAY_HOST_IP = "10.250.0.1"
CLUSTER_DNS_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
BUSYBOX_IMAGE = "busybox:1.35"


def underlay_ip(index: int) -> str:
    """Underlay address of node ``index`` (1-based): ``10.250.0.11`` for node1. Raises ValueError past the /24."""
    import ipaddress

    net = ipaddress.ip_network(UNDERLAY_CIDR)
    if not 1 <= index <= net.num_addresses - 12:
        raise ValueError(f"node index {index} out of range for {UNDERLAY_CIDR}")
    return str(net.network_address + 10 + index)


def home() -> pathlib.Path:
    """The cluster state directory: ``$KUBELING_HOME`` or ``<repo>/.cluster``."""
    env = os.environ.get("KUBELING_HOME")
    return pathlib.Path(env).resolve() if env else REPO_ROOT / ".cluster"


def admin_kubeconfig() -> pathlib.Path:
    """Path of the admin kubeconfig (``<home>/admin.kubeconfig``)."""
    return home() / "admin.kubeconfig"


def node_dir(node: str) -> pathlib.Path:
    """Per-node state: ``<home>/nodes/<node>`` (cri.sock, cni/, pods/ logs, kubeconfigs)."""
    return home() / "nodes" / node
