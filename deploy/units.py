"""systemd units for running kubeling on real Linux VMs: one control-plane VM, N workers.

The local launcher (``deploy.cluster``) and the VMs run the very same
command lines: this module builds a ``Cluster`` whose layout is one VM's
share (the control plane, or one worker node at its own address, in the
host's network namespace) and writes one ``.service`` file per component,
with ``Restart=always`` so systemd supervises them as the launcher does
locally. Workers run the host-gw route controller, so pods on different VMs
reach each other without NAT when the VMs share one L2 subnet (``--node-cidr``).

    python -m deploy units control-plane --address 10.0.0.10 --node-cidr 10.0.0.0/24 --out /etc/systemd/system
    python -m deploy units worker --name worker1 --address 10.0.0.11 --control-plane 10.0.0.10 \\
        --node-cidr 10.0.0.0/24 --out /etc/systemd/system

A worker that joins with a bootstrap token (``kubeling join``) gets the same
units with a kubelet that obtains its own client certificate
(``join_components``: ``--bootstrap-kubeconfig``, ``--cert-dir``).

See deploy/VMS.md for the whole procedure.
"""
from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import pathlib
import shlex

from deploy.cluster import Cluster, Component, Node
from kubeling import config

UNIT_PREFIX = "kubeling-"


def vm_cluster(role: str, *, home: pathlib.Path, address: str, control_plane: str, node_cidr: str,
               name: str = "", workers: dict[str, str] | None = None) -> Cluster:
    """The Cluster of one VM: ``role`` "control-plane" (no nodes; ``workers`` name -> address get
    their kubelet certificates in its PKI) or "worker" (node ``name`` at ``address``).
    Raises ValueError on a bad role, address or CIDR."""
    for a in (address, control_plane):
        ipaddress.ip_address(a)
    ipaddress.ip_network(node_cidr)
    if role == "control-plane":
        nodes: list[Node] = []
    elif role == "worker":
        if not name:
            raise ValueError("a worker needs --name")
        nodes = [Node(name, address, home / "nodes" / name, netns=False, hostgw=True)]
    else:
        raise ValueError(f"unknown role {role!r}: control-plane or worker")
    for ip in (workers or {}).values():
        ipaddress.ip_address(ip)
    cluster = Cluster(home, node_list=nodes, control_plane_ip=control_plane, node_cidr=node_cidr)
    cluster.pki_nodes = {n: [ip] for n, ip in (workers or {}).items()}
    return cluster


def unit_text(comp: Component, *, home: pathlib.Path, after: list[str]) -> str:
    """The ``.service`` file that runs ``comp`` under systemd, restarted whenever it exits."""
    requires = " ".join(after)
    return "\n".join([
        "[Unit]",
        f"Description=kubeling {comp.name}",
        "Documentation=file://" + str(pathlib.Path(__file__).with_name("VMS.md")),
        f"After=network-online.target {requires}".rstrip(),
        "Wants=network-online.target",
        "",
        "[Service]",
        f"Environment=KUBELING_HOME={home}",
        "ExecStart=" + shlex.join(comp.argv),
        "Restart=always",
        "RestartSec=2",
        "KillMode=mixed",
        "TimeoutStopSec=35",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def write_units(cluster: Cluster, out: pathlib.Path, *, comps: list[Component] | None = None) -> list[pathlib.Path]:
    """Write one unit per component of ``cluster`` (or of ``comps``) into ``out``; returns the paths
    written. Node components start after docker.service; the kubelet after its CRI shim."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if comps is None:
        comps = cluster.control_plane_components() if not cluster.nodes else \
            [c for n in cluster.nodes for c in cluster.node_components(n)]
    for comp in comps:
        after = []
        if not comp.name.startswith(("etcdlite", "kube-apiserver", "kube-controller", "kube-scheduler",
                                     "cluster-dns", "hostgw-host")):
            after.append("docker.service")
        if comp.name.startswith("kubelet-"):
            after.append(f"{UNIT_PREFIX}cri-shim-{comp.name.split('-', 1)[1]}.service")
        path = out / f"{UNIT_PREFIX}{comp.name}.service"
        path.write_text(unit_text(comp, home=cluster.home, after=after))
        written.append(path)
    return written


def join_components(cluster: Cluster) -> list[Component]:
    """The components of a worker that joined with a bootstrap token (``kubeling join``): as
    ``node_components``, the kubelet with ``--bootstrap-kubeconfig nodes/<n>/bootstrap-kubelet.kubeconfig``
    and ``--cert-dir nodes/<n>/pki`` so it obtains its own client certificate (upstream's TLS bootstrap), and
    ``--rotate-certificates`` so it renews it before it expires."""
    out = []
    for node in cluster.nodes:
        for comp in cluster.node_components(node):
            if comp.name == f"kubelet-{node.name}":
                argv = list(comp.argv)
                i = argv.index("--kubeconfig") + 2
                argv[i:i] = ["--bootstrap-kubeconfig", str(node.dir / "bootstrap-kubelet.kubeconfig"),
                             "--cert-dir", str(node.dir / "pki"), "--rotate-certificates"]
                comp = dataclasses.replace(comp, argv=argv)
            out.append(comp)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m deploy units ROLE ...``: write the VM's units (and its state dirs and kubeconfigs)."""
    p = argparse.ArgumentParser(prog="python -m deploy units", description="systemd units for kubeling on VMs")
    p.add_argument("role", choices=["control-plane", "worker"])
    p.add_argument("--address", required=True, help="this VM's address on the node network")
    p.add_argument("--control-plane", default="", help="the control-plane VM's address (workers)")
    p.add_argument("--name", default="", help="node name (workers)")
    p.add_argument("--node-cidr", required=True, help="the VMs' subnet, e.g. 10.0.0.0/24")
    p.add_argument("--worker", action="append", default=[], metavar="NAME=IP",
                   help="control-plane: a worker to issue kubelet certificates for (repeatable)")
    p.add_argument("--home", default="/var/lib/kubeling", help="state directory (KUBELING_HOME)")
    p.add_argument("--out", default="/etc/systemd/system", help="where to write the .service files")
    a = p.parse_args(argv)
    try:
        workers = dict(w.split("=", 1) for w in a.worker)
        cluster = vm_cluster(a.role, home=pathlib.Path(a.home), address=a.address,
                             control_plane=a.control_plane or a.address, node_cidr=a.node_cidr, name=a.name,
                             workers=workers)
    except ValueError as e:
        p.error(f"{e} (--worker takes NAME=IP)" if "dictionary update" in str(e) else str(e))
    cluster.write_state()
    for path in write_units(cluster, pathlib.Path(a.out)):
        print(path)
    print(f"state: {cluster.home} (kubeconfigs dial {cluster.node_server if cluster.nodes else cluster.server})")
    if a.role == "control-plane":
        print(f"the apiserver and the cluster DNS listen on {a.address}; pods reach the DNS at "
              f"{config.CLUSTER_DNS_IP}")
    return 0
