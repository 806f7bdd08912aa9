"""Pod networking of the shim: CNI ADD/DEL per sandbox and the pod IP store.

Mirrors dockershim's network/cni plugin and kubenet: the network comes from the
CNI conf dir (NetworkReady is false until there is one), UpdateRuntimeConfig's
pod CIDR is turned into our ``10-kubeling.conflist``, and what was added is
recorded in ``<state dir>/sandboxes/<id>.json`` ({"ip", "added", "result"}) so
that a restarted shim still reports pod IPs and never ADDs a sandbox twice.
Blocking work runs in threads; one asyncio lock per sandbox serialises ADD/DEL.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os

from cni import libcni
from cni.skel import CNIError

log = logging.getLogger("dockershim.network")

CONFLIST_NAME = "10-kubeling.conflist"
IFNAME = "eth0"


class NetworkPlugin:
    """CNI for sandboxes: ``setup``/``teardown`` by sandbox id and netns path."""

    def __init__(self, *, state_dir: str, cni_bin_dir: str, cni_conf_dir: str, bridge: str) -> None:
        self.state_dir = os.path.join(state_dir, "sandboxes")
        self.ipam_dir = os.path.join(state_dir, "ipam")
        self.bin_dirs = [d for d in cni_bin_dir.split(os.pathsep) if d]
        self.conf_dir = cni_conf_dir
        self.bridge = bridge
        self._locks: dict[str, asyncio.Lock] = {}
        self._records: dict[str, dict] = {}  # cache of the record files; the files survive restarts
        os.makedirs(self.state_dir, exist_ok=True)

    def lock(self, sandbox_id: str) -> asyncio.Lock:
        """The asyncio.Lock serialising network setup/teardown of ``sandbox_id`` (created on first use)."""
        return self._locks.setdefault(sandbox_id, asyncio.Lock())

    # ---- configuration -------------------------------------------------------

    def network(self) -> libcni.NetworkConfigList | None:
        """The current network config, None when the conf dir holds none."""
        return libcni.load_conf_dir(self.conf_dir)

    def status(self) -> tuple[bool, str]:
        """(ready, message) for the NetworkReady condition."""
        try:
            net = self.network()
        except CNIError as e:
            return False, e.msg
        if net is None:
            return False, f"no CNI network config found in {self.conf_dir}"
        return True, ""

    def update_pod_cidr(self, pod_cidr: str) -> bool:
        """Write our conflist for ``pod_cidr``; returns True when the file changed."""
        conf = libcni.kubeling_conflist(pod_cidr=pod_cidr, bridge=self.bridge, data_dir=self.ipam_dir)
        path = os.path.join(self.conf_dir, CONFLIST_NAME)
        text = json.dumps(conf, indent=2) + "\n"
        with contextlib.suppress(OSError), open(path) as f:
            if f.read() == text:
                return False
        os.makedirs(self.conf_dir, exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
        log.info("wrote CNI config %s for pod CIDR %s", path, pod_cidr)
        return True

    # ---- per-sandbox records -------------------------------------------------

    def _record_path(self, sandbox_id: str) -> str:
        return os.path.join(self.state_dir, f"{sandbox_id}.json")

    def record(self, sandbox_id: str) -> dict:
        """What we know of the sandbox's network: {"ip", "added", "result"} or {}."""
        if sandbox_id not in self._records:
            try:
                with open(self._record_path(sandbox_id)) as f:
                    self._records[sandbox_id] = json.load(f)
            except (OSError, ValueError):
                return {}
        return dict(self._records[sandbox_id])

    def _write_record(self, sandbox_id: str, record: dict) -> None:
        path = self._record_path(sandbox_id)
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.replace(path + ".tmp", path)
        self._records[sandbox_id] = dict(record)

    def forget(self, sandbox_id: str) -> None:
        """Drop the stored network record and lock of ``sandbox_id`` (after teardown); unknown ids are ignored."""
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._record_path(sandbox_id))
        self._records.pop(sandbox_id, None)
        self._locks.pop(sandbox_id, None)

    def pod_ip(self, sandbox_id: str) -> str:
        """The IP CNI gave ``sandbox_id``, "" if none is recorded."""
        return self.record(sandbox_id).get("ip", "")

    # ---- ADD / DEL -------------------------------------------------------------

    async def setup(self, sandbox_id: str, netns: str) -> str:
        """CNI ADD for the sandbox (at most once); returns the pod IP. Raises CNIError."""
        async with self.lock(sandbox_id):
            rec = self.record(sandbox_id)
            if rec.get("added"):
                return rec.get("ip", "")
            net = await asyncio.to_thread(self.network)
            if net is None:
                raise CNIError(7, f"no CNI network config found in {self.conf_dir}")
            # Recorded before ADD: a crash mid-ADD must still lead to a DEL later.
            self._write_record(sandbox_id, {"ip": "", "added": True, "network": net.name})
            try:
                result = await asyncio.to_thread(libcni.add_network_list, net, container_id=sandbox_id,
                                                 netns=netns, ifname=IFNAME, bin_dirs=self.bin_dirs)
            except BaseException:
                self._write_record(sandbox_id, {"ip": "", "added": True, "failed": True})
                raise
            ip = libcni.pod_ip(result)
            self._write_record(sandbox_id, {"ip": ip, "added": True, "network": net.name, "result": result})
            return ip

    async def teardown(self, sandbox_id: str, netns: str) -> None:
        """CNI DEL if an ADD was recorded; keeps the IP in the record for status."""
        async with self.lock(sandbox_id):
            rec = self.record(sandbox_id)
            if not rec.get("added"):
                return
            net = await asyncio.to_thread(self.network)
            if net is None:
                log.warning("sandbox %s: no CNI config to run DEL with; dropping its record", sandbox_id)
            else:
                await asyncio.to_thread(libcni.del_network_list, net, container_id=sandbox_id, netns=netns,
                                        ifname=IFNAME, bin_dirs=self.bin_dirs, prev_result=rec.get("result"))
            rec["added"] = False
            self._write_record(sandbox_id, rec)
