"""The local cluster launcher behind ``make up``, ``make down`` and ``make status``.

Starts every component of DESIGN.md's process table as its own process, the
way a user would by hand (``python -m <component> --flags``), waits for each
to be healthy before starting the next, and tears down exactly what kubeling
created: its processes (by pid file), the containers labelled with its node
names, kube-proxy's iptables chains, the pod bridge and the safety routes.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime
import ipaddress
import json
import os
import pathlib
import secrets
import shutil
import ssl
import subprocess
import sys
import time
from typing import Callable

import httpx

from deploy import host, procs, supervise, underlay
from kubeling import config
from kubeling.client import kubeconfig
from kubeling.pki import certlist as pki_certs
from kubeling.pki import flags as pki_flags

PY = sys.executable
NODE = "node1"
NODE_IP = "127.0.0.1"
PROXY_MODES = ("iptables", "nftables")  # kube-proxy's --proxy-mode values kubeling implements
LAYOUT_FILE = "cluster.json"  # remembers NODES and HA so that `make down` / `make status` need no flag
# HA=1: (component, client port, peer port) of the three etcdlite members (DESIGN.md's ports),
# and the apiservers' own ports behind haproxy on the apiserver port.
ETCD_MEMBERS = (("etcdlite-0", config.ETCD_CLIENT_PORT, config.ETCD_PEER_PORT),
                ("etcdlite-1", 22379, 22380), ("etcdlite-2", 32379, 32380))
APISERVER_HA_PORTS = (6444, 6445)
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Anonymous requests only for health and version (kubeadm's probes); anything else without
# credentials is 401 (upstream's AnonymousAuthConfigurableEndpoints).
AUTHN_CONFIG = """apiVersion: apiserver.config.k8s.io/v1beta1
kind: AuthenticationConfiguration
anonymous:
  enabled: true
  conditions:
  - path: /livez
  - path: /readyz
  - path: /healthz
  - path: /version
"""
DNS_USER = "system:serviceaccount:kube-system:kube-dns"  # bound to system:kube-dns by the default policy
ENCRYPTION_CONFIG = """apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aesgcm:
          keys:
            - name: key1
              secret: {key}
      - identity: {{}}
"""


def _write_private(path: pathlib.Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the start (secrets, keys)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


class LaunchError(Exception):
    """A component failed to start or become healthy (message names its log)."""


@dataclasses.dataclass
class Component:
    """One process of the cluster: how to start it and how to tell it is healthy."""

    name: str
    argv: list[str]
    healthy: Callable[[], bool]
    expect: str  # substring of its command line, to recognise it by pid
    timeout: float = 60.0
    # `up` starts the components of one wave together, waves in order: what needs no apiserver
    # (etcd, the apiservers, which retry etcd, the LB, the CRI shims) first, then the rest.
    wave: int = 1


@dataclasses.dataclass(frozen=True)
class Node:
    """One node of the local cluster: its name, address, state dir and whether it
    runs in its own network namespace (``kl-<name>``) or in the host's."""

    name: str
    ip: str
    dir: pathlib.Path
    netns: bool
    hostgw: bool = False  # runs the host-gw route controller (several nodes on one L2 segment)

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the node's netns (unchanged for the host-namespace node)."""
        return [*underlay.nsenter(self.name), *argv] if self.netns else argv


def _http_ok(url: str, *, verify: str | bool = True) -> Callable[[], bool]:
    """A health check: GET ``url`` answers 200 (HTTPS verified against the CA file ``verify``)."""
    ctx: list = []

    def check() -> bool:
        try:
            if isinstance(verify, str) and not ctx:
                ctx.append(ssl.create_default_context(cafile=verify))
            return httpx.get(url, timeout=2, verify=ctx[0] if ctx else verify).status_code == 200
        except (httpx.HTTPError, OSError):
            return False
    return check


def _etcd_ok(endpoint: str, *, pki: pathlib.Path | None = None) -> Callable[[], bool]:
    """A health check: Maintenance.Status answers (over mutual TLS with etcd's health-check
    client certificate when ``pki`` is given)."""
    def check() -> bool:
        import grpc

        from proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

        try:
            if pki is None:
                ch = grpc.insecure_channel(endpoint)
            else:
                creds = grpc.ssl_channel_credentials(
                    (pki / "etcd" / "ca.crt").read_bytes(), (pki / "etcd" / "healthcheck-client.key").read_bytes(),
                    (pki / "etcd" / "healthcheck-client.crt").read_bytes())
                ch = grpc.secure_channel(endpoint, creds)
            with ch:
                rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest(), timeout=2)
            return True
        except (grpc.RpcError, OSError):
            return False
    return check


def _cri_ok(sock: pathlib.Path) -> Callable[[], bool]:
    def check() -> bool:
        import grpc

        from proto.cri import api_pb2, api_pb2_grpc

        if not sock.exists():
            return False
        try:
            with grpc.insecure_channel(f"unix://{sock}") as ch:
                api_pb2_grpc.RuntimeServiceStub(ch).Version(api_pb2.VersionRequest(), timeout=2)
            return True
        except grpc.RpcError:
            return False
    return check


def _env_flag(name: str) -> bool:
    """True when ``$name`` is set to 1/true/yes."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def _env_nodes() -> int:
    """``$NODES`` as an int (0 when unset or empty). Raises ValueError on a non-number."""
    text = os.environ.get("NODES", "").strip()
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"NODES must be a number, not {text!r}") from None


class Cluster:
    """A local cluster whose state lives under ``home``.

    ``nodes`` (default: ``$NODES``, else what the last ``up`` recorded, else 1):
    with one node, ``node1`` runs in the host's network namespace at 127.0.0.1;
    with more, every node runs in its own netns on the underlay bridge
    (``deploy.underlay``), at 10.250.0.11, .12, ... ``proxy_mode`` (default:
    ``$PROXY_MODE``, else the last ``up``'s, else "iptables") is kube-proxy's
    --proxy-mode, iptables or nftables. Raises ValueError on a bad count or mode.
    """

    def __init__(self, home: pathlib.Path | None = None, *, nodes: int | None = None,
                 node_list: list[Node] | None = None, control_plane_ip: str = config.UNDERLAY_HOST_IP,
                 node_cidr: str = config.UNDERLAY_CIDR, ha: bool | None = None, secure: bool | None = None,
                 proxy_mode: str | None = None):
        self.home = home or config.home()
        self.logs = self.home / "logs"
        self.run = self.home / "run"
        # The control plane's address on the nodes' network: apiserver, cluster DNS.
        self.control_plane_ip = control_plane_ip
        self.node_cidr = node_cidr
        self.ha = ha if ha is not None else (_env_flag("HA") or bool(self._recorded("ha")))
        self.proxy_mode = (proxy_mode or os.environ.get("PROXY_MODE", "").strip()
                           or self._recorded("proxy_mode") or "iptables")
        if self.proxy_mode not in PROXY_MODES:
            raise ValueError(f"PROXY_MODE must be one of {', '.join(PROXY_MODES)}, not {self.proxy_mode!r}")
        if node_list is not None:  # a layout given whole (deploy.units for VMs)
            self.nodes = node_list
        else:
            count = nodes or _env_nodes() or int(self._recorded("nodes") or 0) or 1
            if not 1 <= count <= 50:
                raise ValueError(f"NODES must be between 1 and 50, not {count}")
            if count > 1:
                self.nodes = [Node(f"node{i}", config.underlay_ip(i), self.home / "nodes" / f"node{i}", True, True)
                              for i in range(1, count + 1)]
            else:
                self.nodes = [Node(NODE, NODE_IP, self.home / "nodes" / NODE, False)]
        self.netns_mode = any(n.netns for n in self.nodes)
        # The control-plane host needs routes to the pods (DNS replies) unless it is the one node.
        self.host_routes = self.netns_mode or not self.nodes
        self.node_dir = self.nodes[0].dir if self.nodes else self.home / "nodes" / NODE
        # TLS everywhere with kubeadm's PKI, authentication, Node+RBAC authorization, admission
        # and encryption at rest; KUBELING_INSECURE=1 (or secure=False) keeps the plain-HTTP
        # development setup of earlier milestones.
        recorded = self._recorded("secure")
        self.secure = secure if secure is not None else (
            not _env_flag("KUBELING_INSECURE") if recorded is None or "KUBELING_INSECURE" in os.environ
            else bool(recorded))
        self.pki = self.home / "pki"
        self.pki_nodes: dict[str, list[str]] = {}  # more nodes to issue kubelet certificates for (VMs)
        scheme = "https" if self.secure else "http"
        self.ca = str(self.pki / "ca.crt") if self.secure else True
        self.server = f"{scheme}://127.0.0.1:{config.APISERVER_PORT}"
        # What nodes dial: the control plane's address when they do not share its loopback.
        self.node_server = (self.server if all(n.ip == NODE_IP for n in self.nodes)
                            else f"{scheme}://{control_plane_ip}:{config.APISERVER_PORT}")

    def _recorded(self, field: str):
        """``field`` of the layout the last ``up`` recorded (None when absent)."""
        try:
            return json.loads((self.home / LAYOUT_FILE).read_text()).get(field)
        except (OSError, ValueError, AttributeError):
            return None

    # -- layout -----------------------------------------------------------------
    def components(self) -> list[Component]:
        """The processes in start order: control plane, cluster DNS, then each node's."""
        return self.control_plane_components() + [c for node in self.nodes for c in self.node_components(node)]

    def control_plane_components(self) -> list[Component]:
        """etcdlite, apiserver, controller-manager, scheduler, cluster DNS (and, with nodes in
        their own netns, the host's host-gw route controller). With ``ha``: three etcdlite
        members, two apiservers behind haproxy on the apiserver port, two controller-managers
        and two schedulers that elect a leader each."""
        h, cp = self.home, self.control_plane_ip
        members = ETCD_MEMBERS if self.ha else ETCD_MEMBERS[:1]
        names = self.etcd_names()
        es = "https" if self.secure else "http"
        initial = ",".join(f"{n}={es}://127.0.0.1:{peer}" for n, (_, _, peer) in zip(names, members))
        etcd_servers = ",".join(f"{es}://127.0.0.1:{client}" for _, client, _ in members)
        comps = []
        for name, (comp_name, client, peer) in zip(names, members):
            url = f"{es}://127.0.0.1:{client}"
            tls = pki_flags.etcd_flags(self.pki, name, names) if self.secure else []
            comps.append(Component(comp_name if self.ha else "etcdlite", [
                PY, "-m", "etcdlite", "--name", name, "--data-dir", str(h / "etcd" / name),
                "--listen-client-urls", url, "--advertise-client-urls", url,
                "--listen-peer-urls", f"{es}://127.0.0.1:{peer}", "--initial-cluster", initial,
                "--listen-metrics-urls", f"http://127.0.0.1:{peer + 1}", *tls],
                _etcd_ok(f"127.0.0.1:{client}", pki=self.pki if self.secure else None), "-m etcdlite", wave=0))
        ports = APISERVER_HA_PORTS if self.ha else (config.APISERVER_PORT,)
        scheme = "https" if self.secure else "http"
        for i, port in enumerate(ports):
            comps.append(Component(f"kube-apiserver-{i}" if self.ha else "kube-apiserver", [
                PY, "-m", "apiserver", "--etcd-servers", etcd_servers, "--bind-address", f"127.0.0.1,{cp}",
                "--advertise-address", cp, "--secure-port", str(port),
                "--service-cluster-ip-range", config.SERVICE_CIDR, *self.apiserver_security_flags()],
                _http_ok(f"{scheme}://127.0.0.1:{port}/readyz", verify=self.ca), "-m apiserver", wave=0))
        if self.ha:
            comps.append(Component("apiserver-lb", ["haproxy", "-db", "-f", str(h / "haproxy.cfg")],
                                   _http_ok(f"{self.server}/readyz", verify=self.ca), "haproxy", wave=0))
        root_ca = ["--root-ca-file", str(self.pki / "ca.crt")] if self.secure else []
        if self.secure:  # csrsigning issues the certificates of nodes that join with a bootstrap token
            root_ca += ["--cluster-signing-cert-file", str(self.pki / "ca.crt"),
                        "--cluster-signing-key-file", str(self.pki / "ca.key")]
        for i in range(2 if self.ha else 1):
            suffix = f"-{i}" if self.ha else ""
            cm_port = config.CONTROLLER_MANAGER_PORT + 10 * i
            sched_port = config.SCHEDULER_PORT + 10 * i
            comps.append(Component(f"kube-controller-manager{suffix}", [
                PY, "-m", "controllers", "--kubeconfig", str(h / "controller-manager.kubeconfig"),
                "--bind-address", "127.0.0.1", "--secure-port", str(cm_port),
                "--allocate-node-cidrs", "--cluster-cidr", config.CLUSTER_CIDR,
                "--node-cidr-mask-size", str(config.NODE_CIDR_MASK_SIZE),
                "--service-cluster-ip-range", config.SERVICE_CIDR, *root_ca],
                _http_ok(f"http://127.0.0.1:{cm_port}/healthz"), "-m controllers"))
            comps.append(Component(f"kube-scheduler{suffix}", [
                PY, "-m", "scheduler", "--kubeconfig", str(h / "scheduler.kubeconfig"),
                "--bind-address", "127.0.0.1", "--secure-port", str(sched_port)],
                _http_ok(f"http://127.0.0.1:{sched_port}/healthz"), "-m scheduler"))
        comps.append(Component("cluster-dns", [
            PY, "-m", "addons.dns", "--kubeconfig", str(h / "cluster-dns.kubeconfig"),
            "--bind-address", cp, "--port", "53",
            "--cluster-domain", config.CLUSTER_DOMAIN, "--service-ip", config.CLUSTER_DNS_IP,
            "--health-port", str(config.DNS_HEALTH_PORT), "--metrics-port", str(config.DNS_METRICS_PORT)],
            _http_ok(f"http://{cp}:{config.DNS_HEALTH_PORT}/healthz"), "-m addons.dns"))
        comps.append(Component("dashboard", [
            PY, "-m", "addons.dashboard", "--kubeconfig", str(h / "admin.kubeconfig"),
            "--bind-address", "127.0.0.1", "--port", str(config.DASHBOARD_PORT),
            *([] if self.secure else ["--enable-skip-login"])],
            _http_ok(f"http://127.0.0.1:{config.DASHBOARD_PORT}/healthz"), "-m addons.dashboard"))
        if self.host_routes:
            comps.append(Component("hostgw-host", [
                PY, "-m", "cni.hostgw", "--kubeconfig", str(h / "hostgw.kubeconfig"),
                "--healthz-bind-address", f"127.0.0.1:{config.HOSTGW_HEALTHZ_PORT}"],
                _http_ok(f"http://127.0.0.1:{config.HOSTGW_HEALTHZ_PORT}/healthz"), "-m cni.hostgw"))
        return comps

    def etcd_names(self) -> list[str]:
        """The etcdlite member names: ``default``, or etcd0..etcd2 with HA."""
        return ["etcd0", "etcd1", "etcd2"] if self.ha else ["default"]

    def apiserver_security_flags(self) -> list[str]:
        """TLS (kubeadm's files), authentication, Node+RBAC, admission and encryption-at-rest flags
        of every apiserver; none in the insecure development mode."""
        if not self.secure:
            return []
        p = self.pki
        return [*pki_flags.apiserver_flags(p),
                "--authorization-mode", "Node,RBAC",
                "--authentication-config", str(self.home / "authn-config.yaml"),
                "--token-auth-file", str(p / "tokens.csv"), "--enable-bootstrap-token-auth",
                "--service-account-issuer", SA_ISSUER, "--service-account-key-file", str(p / "sa.pub"),
                "--service-account-signing-key-file", str(p / "sa.key"),
                "--enable-admission-plugins", "NodeRestriction",
                "--encryption-provider-config", str(self.home / "encryption-config.yaml")]

    def haproxy_cfg(self) -> str:
        """haproxy's TCP load balancing of the apiserver port over the HA apiservers, each
        checked on /readyz every second (kubeadm's HA recipe with haproxy)."""
        binds = "\n".join(f"    bind {a}:{config.APISERVER_PORT}" for a in ("127.0.0.1", self.control_plane_ip))
        ssl = " check-ssl verify none" if self.secure else ""
        servers = "\n".join(f"    server apiserver-{i} 127.0.0.1:{p} check{ssl}"
                             for i, p in enumerate(APISERVER_HA_PORTS))
        return f"""# written by kubeling's launcher (deploy/cluster.py)
global
    maxconn 4096

defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    retries 2
    option redispatch

frontend apiserver
{binds}
    default_backend apiservers

backend apiservers
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions
{servers}
"""

    def node_components(self, node: Node) -> list[Component]:
        """CRI shim, kubelet, kube-proxy (and, in netns mode, the host-gw route controller) of ``node``."""
        nd, n, ip = node.dir, node.name, node.ip
        sock = nd / "cri.sock"
        dns = ["--cluster-dns", config.CLUSTER_DNS_IP, "--cluster-domain", config.CLUSTER_DOMAIN]
        comps = [
            Component(f"cri-shim-{n}", node.wrap([PY, "-m", "kubelet.dockershim", "--listen", f"unix://{sock}",
                                                  "--node-name", n, "--state-dir", str(nd / "shim"),
                                                  "--cni-bin-dir", str(nd / "cni" / "bin"),
                                                  "--cni-conf-dir", str(nd / "cni" / "net.d")]),
                      _cri_ok(sock), "-m kubelet.dockershim", wave=0),
            Component(f"kubelet-{n}", node.wrap([PY, "-m", "kubelet", "--kubeconfig", str(nd / "kubelet.kubeconfig"),
                                                 "--hostname-override", n, "--node-ip", ip,
                                                 "--container-runtime-endpoint", f"unix://{sock}",
                                                 "--root-dir", str(nd), "--port", str(config.KUBELET_PORT),
                                                 "--healthz-bind-address", ip,
                                                 "--healthz-port", str(config.KUBELET_HEALTHZ_PORT),
                                                 "--cluster-cidr", config.CLUSTER_CIDR,
                                                 "--service-cluster-ip-range", config.SERVICE_CIDR, *dns,
                                                 *(pki_flags.kubelet_flags(self.pki, n) if self.secure else [])]),
                      _http_ok(f"http://{ip}:{config.KUBELET_HEALTHZ_PORT}/healthz"), "-m kubelet "),
            Component(f"kube-proxy-{n}", node.wrap([
                PY, "-m", "proxy", "--kubeconfig", str(nd / "kube-proxy.kubeconfig"),
                "--hostname-override", n, "--cluster-cidr", config.CLUSTER_CIDR,
                "--proxy-mode", self.proxy_mode, "--pod-egress-cidrs", self.node_cidr,
                "--healthz-bind-address", f"{ip}:{config.PROXY_HEALTHZ_PORT}",
                "--metrics-bind-address", f"{ip}:{config.PROXY_METRICS_PORT}"]),
                _http_ok(f"http://{ip}:{config.PROXY_HEALTHZ_PORT}/healthz"), "-m proxy"),
        ]
        if node.hostgw:
            comps.append(Component(f"hostgw-{n}", node.wrap([
                PY, "-m", "cni.hostgw", "--kubeconfig", str(nd / "kube-proxy.kubeconfig"), "--node-name", n,
                "--healthz-bind-address", f"{ip}:{config.HOSTGW_HEALTHZ_PORT}"]),
                _http_ok(f"http://{ip}:{config.HOSTGW_HEALTHZ_PORT}/healthz"), "-m cni.hostgw"))
        return comps

    def write_state(self) -> None:
        """Create the state directories, the PKI (kubeadm's layout under ``pki/``), the static
        tokens, the encryption-at-rest config and one kubeconfig per identity (all idempotent);
        record the layout for later ``down``/``status``. Raises LaunchError on a PKI failure."""
        for d in (self.logs, self.run, self.home / "etcd"):
            d.mkdir(parents=True, exist_ok=True)
        (self.home / LAYOUT_FILE).write_text(json.dumps({"nodes": len(self.nodes), "ha": self.ha,
                                                          "secure": self.secure,
                                                          "proxy_mode": self.proxy_mode}) + "\n")
        if self.ha:
            (self.home / "haproxy.cfg").write_text(self.haproxy_cfg())
        if self.secure:
            self._write_secure_state()
        else:
            kubeconfig.write(self.home / "admin.kubeconfig", server=self.server, user="kubernetes-admin")
            kubeconfig.write(self.home / "scheduler.kubeconfig", server=self.server, user="system:kube-scheduler")
            kubeconfig.write(self.home / "controller-manager.kubeconfig", server=self.server,
                             user="system:kube-controller-manager")
            kubeconfig.write(self.home / "cluster-dns.kubeconfig", server=self.server,
                             user="system:serviceaccount:kube-system:kube-dns")
            kubeconfig.write(self.home / "hostgw.kubeconfig", server=self.server, user="system:kube-proxy")
        from cni.install import install

        for node in self.nodes:
            for d in (node.dir / "cni" / "bin", node.dir / "cni" / "net.d", node.dir / "shim", node.dir / "pods"):
                d.mkdir(parents=True, exist_ok=True)
            if not self.secure:
                kubeconfig.write(node.dir / "kubelet.kubeconfig", server=self.node_server,
                                 user=f"system:node:{node.name}")
                kubeconfig.write(node.dir / "kube-proxy.kubeconfig", server=self.node_server,
                                 user="system:kube-proxy")
            install(str(node.dir / "cni" / "bin"), python=PY)

    def _write_secure_state(self) -> None:
        from kubeling.pki.certs import PKIError

        p = self.pki
        sans = ["127.0.0.1", self.control_plane_ip, "localhost"]
        try:
            pki_certs.ensure(p, apiserver_sans=sans, etcd_members=self.etcd_names(),
                             nodes={**self.pki_nodes, **{n.name: [n.ip] for n in self.nodes}})
            for identity, path in (("admin", "admin.kubeconfig"), ("scheduler", "scheduler.kubeconfig"),
                                   ("controller-manager", "controller-manager.kubeconfig"),
                                   ("kube-proxy", "hostgw.kubeconfig")):
                pki_certs.write_kubeconfig(self.home / path, pki_dir=p, identity=identity, server=self.server)
            for node in self.nodes:
                node.dir.mkdir(parents=True, exist_ok=True)
                pki_certs.write_kubeconfig(node.dir / "kubelet.kubeconfig", pki_dir=p,
                                           identity=f"nodes/{node.name}/kubelet-client", server=self.node_server)
                pki_certs.write_kubeconfig(node.dir / "kube-proxy.kubeconfig", pki_dir=p, identity="kube-proxy",
                                           server=self.node_server)
        except PKIError as e:
            raise LaunchError(f"PKI: {e}") from e
        tokens = self.static_tokens()
        ca = (p / "ca.crt").read_bytes()
        kubeconfig.write(self.home / "cluster-dns.kubeconfig", server=self.server, ca_data=ca,
                         user=DNS_USER, token=tokens["cluster-dns"])
        kubeconfig.write(self.home / "dashboard-admin.kubeconfig", server=self.server, ca_data=ca,
                         user="kubernetes-admin-token", token=tokens["admin"])
        (self.home / "authn-config.yaml").write_text(AUTHN_CONFIG)
        enc = self.home / "encryption-config.yaml"
        if not enc.exists():
            key = base64.b64encode(secrets.token_bytes(32)).decode()
            _write_private(enc, ENCRYPTION_CONFIG.format(key=key))

    def static_tokens(self) -> dict[str, str]:
        """name -> bearer token of ``pki/tokens.csv`` (the apiserver's --token-auth-file), made once:
        the cluster DNS's identity and an admin token for the dashboard's login."""
        path = self.pki / "tokens.csv"
        have = {}
        if path.exists():
            for line in path.read_text().splitlines():
                parts = line.split(",")
                if len(parts) >= 3:
                    have[parts[2]] = parts[0]
        want = {"cluster-dns": (DNS_USER, "kubeling-cluster-dns", "system:serviceaccounts,"
                                "system:serviceaccounts:kube-system"),
                "admin": ("kubernetes-admin-token", "kubeling-admin", "system:masters")}
        if set(have) != {uid for _, uid, _ in want.values()}:
            lines = []
            for name, (user, uid, groups) in want.items():
                token = have.get(uid) or secrets.token_hex(24)
                have[uid] = token
                lines.append(f'{token},{user},{uid},"{groups}"')
            _write_private(path, "\n".join(lines) + "\n")
        return {name: have[uid] for name, (_, uid, _) in want.items()}

    def setup_network(self) -> None:
        """The underlay bridge on the host and, in netns mode, one netns per node
        (``deploy.underlay``). Idempotent; raises LaunchError on netlink failures."""
        try:
            underlay.ensure_host(safety_routes=self.netns_mode)
            for node in self.nodes:
                if node.netns:
                    underlay.ensure_node(node.name, node.ip)
        except (OSError, RuntimeError) as e:
            raise LaunchError(f"node network: {e}") from e

    # -- lifecycle --------------------------------------------------------------
    @property
    def supervisor(self) -> supervise.Supervisor:
        """The supervisord that runs this cluster's processes."""
        return supervise.Supervisor(self.home)

    def supervise(self) -> None:
        """Start supervisord with every component's program (or load changes into the running one).
        Raises LaunchError."""
        try:
            self.supervisor.ensure([(c.name, c.argv) for c in self.components()])
        except supervise.SupervisorError as e:
            raise LaunchError(str(e)) from e

    def pid_of(self, comp: Component) -> int:
        """Pid of ``comp`` while supervisord reports it RUNNING, else 0."""
        info = self.supervisor.info(comp.name)
        return int(info.get("pid") or 0) if info.get("statename") == "RUNNING" else 0

    def start_components(self, comps: list[Component]) -> dict[str, tuple[bool, float]]:
        """Start together every one of ``comps`` that does not already run healthy, then wait
        for all of them to be healthy. Returns name -> (started, seconds). Raises LaunchError
        (with the log's tail) for the first one that exits or stays unhealthy."""
        t0 = time.monotonic()
        result: dict[str, tuple[bool, float]] = {}
        pending = []
        for comp in comps:
            if self.pid_of(comp) and comp.healthy():
                result[comp.name] = (False, 0.0)
                continue
            try:
                self.supervisor.start(comp.name)
            except supervise.SupervisorError as e:
                raise LaunchError(f"{e}\n{self.log_tail(comp.name)}") from e
            pending.append(comp)
        while pending:
            for comp in list(pending):
                state = self.supervisor.info(comp.name).get("statename")
                if state in ("FATAL", "EXITED"):
                    raise LaunchError(f"{comp.name} exited during start-up ({state})\n{self.log_tail(comp.name)}")
                # BACKOFF: it exited early and supervisord starts it again; the timeout below decides.
                if state == "RUNNING" and comp.healthy():
                    result[comp.name] = (True, time.monotonic() - t0)
                    pending.remove(comp)
                elif time.monotonic() - t0 > comp.timeout:
                    raise LaunchError(f"{comp.name} not healthy after {comp.timeout:.0f}s\n"
                                      f"{self.log_tail(comp.name)}")
            if pending:
                time.sleep(0.1)
        return result

    def log_tail(self, name: str, lines: int = 15) -> str:
        """Last ``lines`` lines of a component's log, indented, with its path."""
        path = self.logs / f"{name}.log"
        try:
            tail = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            tail = []
        return f"  log: {path}\n" + "\n".join("  | " + line for line in tail)

    def wait_node_ready(self, *, since: float, timeout: float = 60) -> float:
        """Wait until every node reports Ready True in a heartbeat sent at or after
        ``since`` (a Unix time: a Ready status left in the store by an earlier run
        does not count); returns seconds waited. Raises LaunchError naming the first node not Ready."""
        t0 = time.monotonic()
        since_stamp = datetime.datetime.fromtimestamp(int(since) - 1, datetime.timezone.utc)
        waiting = [n.name for n in self.nodes]
        while waiting and time.monotonic() - t0 < timeout:
            waiting = [n for n in waiting if not self._ready_since(n, since_stamp)]
            if waiting:
                time.sleep(0.3)
        if waiting:
            raise LaunchError(f"node {waiting[0]} not Ready after {timeout:.0f}s\n"
                              f"{self.log_tail(f'kubelet-{waiting[0]}')}")
        return time.monotonic() - t0

    def admin_http(self) -> httpx.Client:
        """An HTTP client of the apiserver as the admin (the admin kubeconfig's credentials)."""
        return httpx.Client(timeout=5, **kubeconfig.load(self.home / "admin.kubeconfig").httpx_kwargs())

    def _ready_since(self, name: str, since: datetime.datetime) -> bool:
        try:
            with self.admin_http() as http:
                node = http.get(f"/api/v1/nodes/{name}").json()
            for c in node.get("status", {}).get("conditions", []):
                if c.get("type") == "Ready" and c.get("status") == "True":
                    beat = datetime.datetime.fromisoformat(c.get("lastHeartbeatTime", "").replace("Z", "+00:00"))
                    return beat >= since
        except (httpx.HTTPError, ValueError):
            pass
        return False

    def prepare_host(self) -> None:
        """Start dockerd if needed and build the local images."""
        host.ensure_dockerd(self.run, self.logs)
        host.ensure_busybox_image()

    def down(self) -> list[str]:
        """Stop every process and remove what kubeling created on the host.
        Returns a list of what was done (for printing). Cluster state on disk is kept."""
        try:
            done = self.supervisor.shutdown()
        except supervise.SupervisorError as e:
            done = [str(e)]
        for comp in reversed(self.components()):  # processes of a launcher before supervision
            pid = procs.read_pid(self.run / f"{comp.name}.pid")
            if procs.stop_pid(pid, expect=comp.expect, timeout=15):
                done.append(f"stopped {comp.name} (pid {pid})")
            (self.run / f"{comp.name}.pid").unlink(missing_ok=True)
        if host.docker_ok():
            ids = []
            for node in self.nodes:
                ids += subprocess.run(["docker", "ps", "-aq", "--filter", f"label=io.kubeling.node={node.name}"],
                                      capture_output=True, text=True, timeout=60).stdout.split()
            if ids:
                subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=120)
                done.append(f"removed {len(ids)} containers")
        if not self.netns_mode:
            r = subprocess.run([PY, "-m", "proxy", "--cleanup"], capture_output=True, text=True, timeout=60)
            if r.returncode == 0:
                done.append("removed kube-proxy rules (iptables chains, nftables table)")
            else:
                done.append(f"kube-proxy --cleanup failed: {(r.stderr or r.stdout).strip()[-200:]}")
            done.extend(teardown_node_network())
        # A node netns takes its bridge, routes and kube-proxy rules with it.
        done.extend(underlay.teardown([n.name for n in self.nodes if n.netns]))
        # Containers are gone, so are their addresses: forget the IPAM leases.
        for node in self.nodes:
            for d in ("ipam", "sandboxes"):
                shutil.rmtree(node.dir / "shim" / d, ignore_errors=True)
        if host.stop_dockerd(self.run):
            done.append("stopped dockerd (started by kubeling)")
        return done


def teardown_node_network() -> list[str]:
    """Remove the pod bridge (with its routes and veths) and the cluster-CIDR
    unreachable route that the kubelet added; nothing else."""
    done = []
    if subprocess.run(["ip", "link", "show", config.BRIDGE_NAME], capture_output=True).returncode == 0:
        subprocess.run(["ip", "link", "del", config.BRIDGE_NAME], capture_output=True)
        done.append(f"removed bridge {config.BRIDGE_NAME}")
    r = subprocess.run(["ip", "-j", "route", "show", "type", "unreachable"], capture_output=True, text=True)
    try:
        routes = json.loads(r.stdout or "[]")
    except ValueError:
        routes = []
    cidr = ipaddress.ip_network(config.CLUSTER_CIDR)
    for route in routes:
        if route.get("dst") == str(cidr):
            subprocess.run(["ip", "route", "del", "unreachable", str(cidr)], capture_output=True)
            done.append(f"removed unreachable route {cidr}")
    return done
