"""Running a whole CNI network (a .conflist) for one container: the runtime side.

Mirrors containernetworking/cni libcni: pick the network configuration from a
conf dir (lexically first *.conflist, *.conf or *.json, as libcni.ConfFiles and
the kubelet's CNI plugin did), run ADD through the plugin chain passing each
result on as ``prevResult``, DEL through it in reverse. Blocking (subprocesses):
asyncio callers run it in a thread.
"""
from __future__ import annotations

import dataclasses
import json
import os

from cni.invoke import exec_plugin
from cni.skel import ERR_INVALID_NETCONF, CNIError

CONF_EXTENSIONS = (".conflist", ".conf", ".json")


@dataclasses.dataclass(frozen=True)
class NetworkConfigList:
    """A parsed network configuration list (libcni.NetworkConfigList)."""

    name: str
    cni_version: str
    plugins: tuple[dict, ...]
    path: str

    def plugin_conf(self, plugin: dict, prev_result: dict | None) -> dict:
        """The stdin JSON of one plugin in the chain (libcni.buildOneConfig)."""
        conf = dict(plugin, name=self.name, cniVersion=self.cni_version)
        if prev_result is not None:
            conf["prevResult"] = prev_result
        return conf


def load_conf_dir(conf_dir: str) -> NetworkConfigList | None:
    """The first valid network configuration in ``conf_dir``, or None if there is none.

    Raises CNIError(ERR_INVALID_NETCONF) when the first candidate file is unreadable.
    """
    try:
        names = sorted(n for n in os.listdir(conf_dir) if n.endswith(CONF_EXTENSIONS))
    except FileNotFoundError:
        return None
    for name in names:
        path = os.path.join(conf_dir, name)
        try:
            with open(path) as f:
                raw = json.load(f)
        except (OSError, ValueError) as e:
            raise CNIError(ERR_INVALID_NETCONF, f"error loading CNI config {path}: {e}") from None
        if not isinstance(raw, dict):
            raise CNIError(ERR_INVALID_NETCONF, f"CNI config {path} is not a JSON object")
        if name.endswith(".conflist") or "plugins" in raw:
            plugins = raw.get("plugins")
            if not isinstance(plugins, list) or not plugins:
                raise CNIError(ERR_INVALID_NETCONF, f"CNI config list {path} has no plugins")
        else:
            plugins = [{k: v for k, v in raw.items() if k not in ("name", "cniVersion")}]
        if not raw.get("name"):
            raise CNIError(ERR_INVALID_NETCONF, f"CNI config {path} has no network name")
        return NetworkConfigList(name=raw["name"], cni_version=raw.get("cniVersion", "1.0.0"),
                                 plugins=tuple(plugins), path=path)
    return None


def add_network_list(net: NetworkConfigList, *, container_id: str, netns: str, ifname: str,
                     bin_dirs: list[str]) -> dict:
    """ADD through the chain; returns the last plugin's result. Raises CNIError."""
    result = None
    for plugin in net.plugins:
        result = exec_plugin(plugin.get("type", ""), command="ADD",
                             conf=net.plugin_conf(plugin, result), container_id=container_id,
                             netns=netns, ifname=ifname, paths=bin_dirs)
    return result or {}


def del_network_list(net: NetworkConfigList, *, container_id: str, netns: str, ifname: str,
                     bin_dirs: list[str], prev_result: dict | None = None) -> None:
    """DEL through the chain in reverse; raises the first CNIError after trying all."""
    first_error = None
    for plugin in reversed(net.plugins):
        try:
            exec_plugin(plugin.get("type", ""), command="DEL",
                        conf=net.plugin_conf(plugin, prev_result), container_id=container_id,
                        netns=netns, ifname=ifname, paths=bin_dirs)
        except CNIError as e:
            first_error = first_error or e
    if first_error is not None:
        raise first_error


def pod_ip(result: dict) -> str:
    """The first IPv4 address (without prefix) of an ADD result, or ""."""
    for entry in result.get("ips") or []:
        addr = str(entry.get("address", "")).split("/")[0]
        if addr and ":" not in addr:
            return addr
    return ""


def kubeling_conflist(*, pod_cidr: str, bridge: str, data_dir: str, name: str = "kubeling") -> dict:
    """The network configuration the shim writes for a node's pod CIDR.

    Like kubenet's: our bridge plugin as gateway of the node's /24 with hairpin
    mode, host-local IPAM over the CIDR with a default route via the bridge.
    No ipMasq: kube-proxy owns masquerading and nothing leaves the machine.
    """
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [{
            "type": "bridge",
            "bridge": bridge,
            "isGateway": True,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": pod_cidr}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": data_dir,
            },
        }],
    }
