"""Pod networking of the shim: CNI ADD/DEL per sandbox and the pod IP store.

Mirrors dockershim's network/cni plugin and kubenet: the network comes from the
CNI conf dir (NetworkReady is false until there is one), UpdateRuntimeConfig's
pod CIDR is turned into our ``10-kubeling.conflist``, and what was added is
recorded in ``<state dir>/sandboxes/<id>.json`` ({"ip", "added", "result"}) so
that a restarted shim still reports pod IPs and never ADDs a sandbox twice.
Blocking work runs in threads; one asyncio lock per sandbox serialises ADD/DEL.

CNIServerProcess keeps the per-node CNI server (``python -m cni.server``) running
as a child, as Cilium's and Calico's agents serve their CNI binaries: the
plugin executables are stubs that hand each invocation to it. It is a child
process because pyroute2 must not be imported into the shim's event loop.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import subprocess
import sys

from cni import invoke, libcni, stub
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


def _server_runner(plugin: str):
    """An in-process runner (cni.invoke.register_in_process) doing what our stub executable does,
    without starting it: forward the invocation to the CNI server named in the stub's bin dir,
    else run the stub executable (which becomes the standalone plugin). Each ADD of a burst of
    pods would otherwise start a Python interpreter for the stub (~10 ms of CPU)."""
    def run(env: dict, stdin: bytes) -> tuple[int, bytes, bytes]:
        exe = invoke.find_in_path(plugin, (env.get("CNI_PATH") or "").split(os.pathsep))
        try:
            answer = stub.forward(stub.server_socket_path(os.path.dirname(exe)), plugin, env, lambda: stdin)
        except stub.ProtocolError as e:
            return 1, json.dumps({"cniVersion": "1.0.0", "code": e.code, "msg": f"CNI server: {e}",
                                  "details": ""}).encode(), b""
        if answer is not None:
            return answer
        try:
            proc = subprocess.run([exe], input=stdin, env=dict(os.environ, **env), capture_output=True,
                                  timeout=invoke.DEFAULT_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            return 1, json.dumps({"cniVersion": "1.0.0", "code": 999, "msg": f"plugin {plugin} timed out",
                                  "details": ""}).encode(), b""
        return proc.returncode, proc.stdout, proc.stderr
    return run


def forward_to_cni_server() -> None:
    """Make this process's CNI invocations of our own plugin executables talk to the node's CNI
    server directly (see _server_runner); the reference plugins are still executed."""
    for plugin in ("bridge", "host-local"):
        invoke.register_in_process(plugin, _server_runner(plugin))


class CNIServerProcess:
    """Starts ``python -m cni.server`` for a CNI bin dir and restarts it when it exits.

    ``socket_path`` lives in the shim's state dir (or /tmp when that path is too
    long for a unix socket). The server writes the pointer file the stubs read;
    without a running server the stubs run the plugins themselves, so a dead or
    restarting server slows ADDs down but never fails them.
    """

    MAX_SOCKET_PATH = 100
    BACKOFF_MAX = 30.0

    def __init__(self, *, state_dir: str, bin_dir: str) -> None:
        path = os.path.join(os.path.abspath(state_dir), "cni-server.sock")
        if len(path) > self.MAX_SOCKET_PATH:
            path = f"/tmp/kubeling-cni-{hashlib.sha1(path.encode()).hexdigest()[:12]}.sock"
        self.socket_path = path
        self.bin_dir = bin_dir
        self.proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False

    def argv(self) -> list[str]:
        """The server's command line."""
        return [sys.executable, "-m", "cni.server", "--socket", self.socket_path, "--bin-dir", self.bin_dir,
                "--exit-with-parent"]

    async def start(self) -> None:
        """Start the server and its supervising task (returns at once; stubs fall back until it listens)."""
        self._task = asyncio.create_task(self._supervise(), name="cni-server")

    async def _supervise(self) -> None:
        backoff = 1.0
        root = os.path.dirname(os.path.dirname(os.path.abspath(libcni.__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        while not self._stopping:
            started = asyncio.get_running_loop().time()
            try:
                self.proc = await asyncio.create_subprocess_exec(*self.argv(), env=env,
                                                                 stdin=asyncio.subprocess.DEVNULL)
            except OSError as e:
                log.error("cannot start the CNI server: %s", e)
            else:
                log.info("CNI server pid %d on %s", self.proc.pid, self.socket_path)
                code = await self.proc.wait()
                if self._stopping:
                    return
                log.warning("CNI server exited with %s; restarting in %.0f s", code, backoff)
            if asyncio.get_running_loop().time() - started > 60:
                backoff = 1.0
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.BACKOFF_MAX)

    async def stop(self, *, timeout: float = 5.0) -> None:
        """SIGTERM the server (SIGKILL after ``timeout`` s) and stop supervising."""
        self._stopping = True
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
