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
BRIDGE_NAME = "kubeling0"
BUSYBOX_IMAGE = "busybox:1.35"


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
