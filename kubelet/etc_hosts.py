"""The kubelet-managed /etc/hosts of a pod's containers.

Mirrors pkg/kubelet/kubelet_pods.go (makeHostsMount, ensureHostsFile,
managedHostsFileContent, hostsEntriesFromHostAliases): the file lives at
``<root-dir>/pods/<uid>/etc-hosts`` and is bind-mounted at /etc/hosts into
every container of the pod that does not mount something there itself.
A pod with its own network gets localhost, the IPv6 names, its IP with its
hostname (and ``<hostname>.<subdomain>.<namespace>.svc.<cluster domain>`` when
spec.subdomain is set); a hostNetwork pod gets the node's /etc/hosts. Both
end with spec.hostAliases.
"""
from __future__ import annotations

import os

HOSTS_PATH = "/etc/hosts"
FILE_NAME = "etc-hosts"
NODE_HOSTS = "/etc/hosts"

_MANAGED_HEADER = ("# Kubernetes-managed hosts file.\n"
                   "127.0.0.1\tlocalhost\n"
                   "::1\tlocalhost ip6-localhost ip6-loopback\n"
                   "fe00::0\tip6-localnet\n"
                   "fe00::0\tip6-mcastprefix\n"
                   "fe00::1\tip6-allnodes\n"
                   "fe00::2\tip6-allrouters\n")


def hosts_content(pod: dict, pod_ips: list[str], *, cluster_domain: str, node_hosts: str = "") -> str:
    """The text of ``pod``'s hosts file (``pod_ips``: its IPs, first is primary; ``node_hosts``:
    the node's /etc/hosts, used for hostNetwork pods)."""
    spec, meta = pod.get("spec") or {}, pod["metadata"]
    if spec.get("hostNetwork"):
        text = node_hosts if not node_hosts or node_hosts.endswith("\n") else node_hosts + "\n"
    else:
        text = _MANAGED_HEADER
        hostname = spec.get("hostname") or meta["name"]
        domain = (f"{spec['subdomain']}.{meta.get('namespace', 'default')}.svc.{cluster_domain}"
                  if spec.get("subdomain") else "")
        for ip in pod_ips:
            text += f"{ip}\t{hostname}.{domain}\t{hostname}\n" if domain else f"{ip}\t{hostname}\n"
    aliases = spec.get("hostAliases") or []
    if aliases:
        text += "\n# Entries added by HostAliases.\n"
        for a in aliases:
            text += f"{a.get('ip', '')}\t" + "\t".join(a.get("hostnames") or []) + "\n"
    return text


def ensure_hosts_file(pod_dir: str, pod: dict, pod_ips: list[str], *, cluster_domain: str) -> str:
    """Write ``<pod_dir>/etc-hosts`` for ``pod`` (in place, so that containers already mounting
    it see a change, as upstream's os.WriteFile) and return its path. Raises OSError."""
    node_hosts = ""
    if (pod.get("spec") or {}).get("hostNetwork"):
        try:
            with open(NODE_HOSTS) as f:
                node_hosts = f.read()
        except OSError:
            node_hosts = ""
    text = hosts_content(pod, pod_ips, cluster_domain=cluster_domain, node_hosts=node_hosts)
    path = os.path.join(pod_dir, FILE_NAME)
    try:
        with open(path) as f:
            if f.read() == text:
                return path
    except OSError:
        pass
    os.makedirs(pod_dir, exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def mounts_hosts(container: dict) -> bool:
    """True if ``container`` mounts a volume at /etc/hosts itself (then the managed file is not mounted)."""
    return any(os.path.normpath(m.get("mountPath", "")) == HOSTS_PATH for m in container.get("volumeMounts") or [])
