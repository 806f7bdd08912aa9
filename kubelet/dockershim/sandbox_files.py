"""The /etc/resolv.conf and /etc/hosts a pod's containers share, kept by the shim.

Mirrors containerd's CRI (setupSandboxFiles / WithPodResolvConf and the
sandbox-files bind mounts): a sandbox that has its own network namespace gets
a directory ``<state-dir>/sandbox-files/<sandbox id>/`` holding

- ``resolv.conf``: from the sandbox's DNSConfig, or the node's own file when
  the config names no server;
- ``hosts``: a copy of the node's /etc/hosts (the kubelet normally mounts its
  own managed file over /etc/hosts, and then this one is not mounted).

Every app container of the sandbox bind-mounts them read-write unless its CRI
mounts already hold that path. Docker's own per-container files are not used:
the pause container is created with ``NetworkDisabled`` (see docker_sandbox.py),
and Docker then writes none.
"""
from __future__ import annotations

import os
import shutil

RESOLV_CONF = "/etc/resolv.conf"
HOSTS = "/etc/hosts"
NODE_RESOLV_CONF = "/etc/resolv.conf"
NODE_HOSTS = "/etc/hosts"
DEFAULT_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def resolv_conf(dns) -> str:
    """resolv.conf text of a CRI DNSConfig (``servers``, ``searches``, ``options``)."""
    lines = [f"nameserver {s}" for s in dns.servers]
    if dns.searches:
        lines.append("search " + " ".join(dns.searches))
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "\n".join(lines) + "\n"


def _node_file(path: str, default: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


class SandboxFiles:
    """Per-sandbox resolv.conf and hosts under ``root`` (a directory; created on first use)."""

    def __init__(self, root: str) -> None:
        self.root = root

    def dir(self, sandbox_id: str) -> str:
        """``<root>/<sandbox id>``."""
        return os.path.join(self.root, sandbox_id)

    def write(self, sandbox_id: str, dns) -> None:
        """Write the sandbox's files (``dns``: a CRI DNSConfig). Raises OSError."""
        d = self.dir(sandbox_id)
        os.makedirs(d, exist_ok=True)
        resolv = resolv_conf(dns) if dns.servers else _node_file(NODE_RESOLV_CONF, "")
        for name, text in (("resolv.conf", resolv), ("hosts", _node_file(NODE_HOSTS, DEFAULT_HOSTS))):
            tmp = os.path.join(d, f".{name}.tmp")
            with open(tmp, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, os.path.join(d, name))

    def binds(self, sandbox_id: str, taken: set[str]) -> list[str]:
        """Docker binds (``host:container:rw``) of the sandbox's files for an app container whose
        own mounts cover the container paths in ``taken``; [] for a sandbox without files
        (host network, or made by a shim that let Docker write them)."""
        d = self.dir(sandbox_id)
        out = []
        for name, target in (("resolv.conf", RESOLV_CONF), ("hosts", HOSTS)):
            path = os.path.join(d, name)
            if target not in taken and os.path.exists(path):
                out.append(f"{path}:{target}:rw")
        return out

    def remove(self, sandbox_id: str) -> None:
        """Delete the sandbox's files (absent ones are fine)."""
        shutil.rmtree(self.dir(sandbox_id), ignore_errors=True)
