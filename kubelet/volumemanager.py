"""Pod volumes: emptyDir, hostPath, configMap, secret, downwardAPI and projected.

Mirrors pkg/kubelet/volumemanager with the in-tree plugins a pod needs
without storage: emptyDir (``medium: Memory`` as a tmpfs), hostPath (with
its ``type`` checks), configMap, secret, downwardAPI and projected
(configMap, secret, downwardAPI and serviceAccountToken sources; tokens come
from the TokenRequest API bound to the pod, and are renewed once 80% of their
lifetime has passed, as the kubelet's token manager does). Each volume lives under
``<root-dir>/pods/<uid>/volumes/kubernetes.io~<plugin>/<name>`` as upstream
lays it out; the file-backed ones are written by an atomic writer
(pkg/volume/util/atomic_writer.go): the payload goes to a fresh
``..<timestamp>`` directory, the ``..data`` symlink is swapped to it in one
rename, and each top-level key is a symlink through ``..data`` — so a
container never reads half an update, and updates of the ConfigMap or Secret
reach running pods at the next sync.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass

from kubeling.api import quantity
from kubeling.client import ApiError, Client
from kubelet.envvars import EnvError, object_data, pod_field, resource_field
from kubelet.etc_hosts import FILE_NAME as ETC_HOSTS_FILE
from proto.cri import api_pb2 as pb

log = logging.getLogger(__name__)

DEFAULT_MODE = 0o644


class VolumeError(Exception):
    """A volume could not be set up; ``volume`` names it, the message says why (FailedMount)."""

    def __init__(self, volume: str, message: str):
        super().__init__(message)
        self.volume = volume


@dataclass
class Volume:
    """A set-up volume: where it is on the host and whether containers must mount it read-only."""

    host_path: str
    read_only: bool = False


# ---------------------------------------------------------------- payloads

def _items_payload(volume: str, kind: str, obj: dict | None, source: dict, *,
                   default_mode: int) -> dict[str, tuple[bytes, int]]:
    """Files (relative path -> (content, mode)) of a configMap or secret source; ``items``
    select and rename keys. Raises VolumeError for a missing object or key unless optional."""
    name = source.get("name") or source.get("secretName") or ""
    if obj is None:
        if source.get("optional"):
            return {}
        raise VolumeError(volume, f'{kind} "{name}" not found')
    data = object_data(obj)
    items = source.get("items")
    if not items:
        return {k: (v, default_mode) for k, v in data.items()}
    out = {}
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if source.get("optional"):
                continue
            raise VolumeError(volume, f"configmap references non-existent config key: {key}" if kind == "configmap"
                              else f"references non-existent secret key: {key}")
        out[item.get("path") or key] = (data[key], int(item.get("mode") or default_mode))
    return out


def downward_payload(volume: str, pod: dict, source: dict, *, default_mode: int, pod_ip: str = "",
                     node_ip: str = "") -> dict[str, tuple[bytes, int]]:
    """Files of a downwardAPI source: fieldRef and resourceFieldRef items. Raises VolumeError."""
    out = {}
    for item in source.get("items") or []:
        try:
            if item.get("fieldRef"):
                value = pod_field(pod, item["fieldRef"].get("fieldPath", ""), pod_ip=pod_ip, node_ip=node_ip)
            elif item.get("resourceFieldRef"):
                value = resource_field(pod, item["resourceFieldRef"].get("containerName", ""),
                                       item["resourceFieldRef"])
            else:
                continue
        except EnvError as e:
            raise VolumeError(volume, str(e)) from None
        out[item.get("path", "")] = (value.encode(), int(item.get("mode") or default_mode))
    return out


def _safe_relpath(volume: str, path: str) -> str:
    norm = os.path.normpath(path)
    if not path or os.path.isabs(path) or norm.startswith("..") or norm.split(os.sep)[0].startswith(".."):
        raise VolumeError(volume, f"invalid path {path!r}: must be relative and may not contain '..'")
    return norm


def atomic_write(target: str, files: dict[str, tuple[bytes, int]], *, volume: str = "") -> bool:
    """Make ``target`` hold exactly ``files`` (relative path -> (content, mode)) through a fresh
    ``..<timestamp>`` directory and an atomic swap of the ``..data`` symlink; top-level names
    are symlinks into ``..data``. Returns False when the content was already current.
    Raises VolumeError for a path escaping the volume, OSError on I/O failure."""
    files = {_safe_relpath(volume, p): v for p, v in files.items()}
    os.makedirs(target, exist_ok=True)
    data_link = os.path.join(target, "..data")
    if os.path.islink(data_link):
        current = os.path.join(target, os.readlink(data_link))
        if _same_payload(current, files):
            return False
    else:
        current = None
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + str(time.monotonic_ns())
    new_dir = os.path.join(target, stamp)
    os.makedirs(new_dir)
    for rel, (content, mode) in files.items():
        path = os.path.join(new_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
        os.chmod(path, mode)
    os.chmod(new_dir, 0o755)
    tmp_link = os.path.join(target, "..data_tmp")
    if os.path.lexists(tmp_link):
        os.unlink(tmp_link)
    os.symlink(stamp, tmp_link)
    os.rename(tmp_link, data_link)
    wanted_top = {rel.split(os.sep)[0] for rel in files}
    for entry in os.listdir(target):
        if entry.startswith(".."):
            continue
        if entry not in wanted_top:
            os.unlink(os.path.join(target, entry))
    for top in wanted_top:
        link = os.path.join(target, top)
        if not os.path.islink(link):
            os.symlink(os.path.join("..data", top), link)
    if current is not None and os.path.isdir(current):
        shutil.rmtree(current, ignore_errors=True)
    return True


def _same_payload(directory: str, files: dict[str, tuple[bytes, int]]) -> bool:
    try:
        found = set()
        for root, _dirs, names in os.walk(directory):
            for n in names:
                found.add(os.path.relpath(os.path.join(root, n), directory))
        if found != set(files):
            return False
        for rel, (content, mode) in files.items():
            path = os.path.join(directory, rel)
            if stat.S_IMODE(os.stat(path).st_mode) != mode:
                return False
            with open(path, "rb") as f:
                if f.read() != content:
                    return False
        return True
    except OSError:
        return False


_HOSTPATH_CHECKS = {"Directory": stat.S_ISDIR, "File": stat.S_ISREG, "Socket": stat.S_ISSOCK,
                    "CharDevice": stat.S_ISCHR, "BlockDevice": stat.S_ISBLK}


def check_host_path(volume: str, path: str, kind: str) -> None:
    """Apply a hostPath ``type``: create for DirectoryOrCreate / FileOrCreate, else check the kind
    of what exists. Raises VolumeError with upstream's wording."""
    if kind in ("", None):
        return
    if kind == "DirectoryOrCreate":
        os.makedirs(path, mode=0o755, exist_ok=True)
        kind = "Directory"
    elif kind == "FileOrCreate":
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
            with open(path, "a"):
                pass
            os.chmod(path, 0o644)
        kind = "File"
    check = _HOSTPATH_CHECKS.get(kind)
    if check is None:
        raise VolumeError(volume, f"invalid HostPathType {kind!r}")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise VolumeError(volume, f"hostPath type check failed: {path} is not a "
                                  f"{'directory' if kind == 'Directory' else kind.lower()}") from None
    if not check(mode):
        raise VolumeError(volume, f"hostPath type check failed: {path} is not a "
                                  f"{'directory' if kind == 'Directory' else kind.lower()}")


def container_mounts(container: dict, volumes: dict[str, Volume]) -> list[pb.Mount]:
    """CRI mounts of ``container``'s volumeMounts (subPath under the volume, read-only when the
    mount or the volume says so). Raises VolumeError for an unknown volume or a bad subPath."""
    out = []
    for m in container.get("volumeMounts") or []:
        vol = volumes.get(m.get("name", ""))
        if vol is None:
            raise VolumeError(m.get("name", ""), f"volume {m.get('name')!r} of container "
                                                 f"{container.get('name')!r} is not defined in the pod")
        host = vol.host_path
        if m.get("subPath"):
            host = os.path.join(host, _safe_relpath(m["name"], m["subPath"]))
            if not os.path.lexists(host):
                os.makedirs(host, exist_ok=True)
            host = os.path.realpath(host)
        out.append(pb.Mount(container_path=m.get("mountPath", ""), host_path=host,
                            readonly=bool(m.get("readOnly")) or vol.read_only))
    return out


# ---------------------------------------------------------------- the manager

class VolumeManager:
    """Sets up and tears down the volumes of the pods on this node; fetches the ConfigMaps and
    Secrets they and their containers' environments reference.

    Fetched objects are kept ``cache_ttl`` seconds (upstream's TTL-based manager), so one sync
    that mounts a ConfigMap and also draws env from it, or a burst of pods sharing one, GETs it
    once; a change still reaches running pods at the first sync after the TTL."""

    def __init__(self, client: Client | None, root_dir: str, *, cache_ttl: float = 5.0):
        self.client = client
        self.root_dir = root_dir
        self.cache_ttl = cache_ttl
        self._cache: dict[tuple[str, str, str], tuple[float, dict | None]] = {}
        # (namespace, service account, pod uid, audience, expirationSeconds) -> (renew after, token)
        self._tokens: dict[tuple, tuple[float, bytes]] = {}

    async def service_account_token(self, pod: dict, source: dict) -> bytes:
        """A token for the pod's service account from the TokenRequest API, bound to the pod
        (mirrors pkg/kubelet/token's manager: reused until 80% of its lifetime, then renewed).
        Raises VolumeError when there is no client, ApiError when the apiserver refuses."""
        meta = pod["metadata"]
        sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        audience = source.get("audience") or ""
        seconds = int(source.get("expirationSeconds") or 3600)
        key = (meta.get("namespace", "default"), sa, meta.get("uid", ""), audience, seconds)
        now = time.monotonic()
        cached = self._tokens.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        if self.client is None:
            raise VolumeError("token", "serviceAccountToken projection needs an apiserver")
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [audience] if audience else [], "expirationSeconds": seconds,
                         "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": meta["name"],
                                            "uid": meta.get("uid", "")}}}
        resp = await self.client.request(
            "POST", f"/api/v1/namespaces/{key[0]}/serviceaccounts/{sa}/token", body=body)
        token = (resp.get("status") or {}).get("token", "").encode()
        if not token:
            raise VolumeError("token", f"TokenRequest for {key[0]}/{sa} returned no token")
        if len(self._tokens) > 4096:
            self._tokens = {k: v for k, v in self._tokens.items() if v[0] > now}
        self._tokens[key] = (now + 0.8 * seconds, token)
        return token

    def forget_tokens(self, uid: str) -> None:
        """Drop the cached tokens of pod ``uid`` (on teardown)."""
        self._tokens = {k: v for k, v in self._tokens.items() if k[2] != uid}

    def pod_dir(self, uid: str) -> str:
        """``<root-dir>/pods/<uid>``."""
        return os.path.join(self.root_dir, "pods", uid)

    async def fetch(self, namespace: str, refs: set[tuple[str, str]]) -> dict[tuple[str, str], dict | None]:
        """The referenced ConfigMaps/Secrets (None when absent). Raises ApiError for other failures."""
        out: dict[tuple[str, str], dict | None] = {}
        now = time.monotonic()
        for plural, name in sorted(refs):
            if self.client is None:
                out[(plural, name)] = None
                continue
            key = (namespace, plural, name)
            cached = self._cache.get(key)
            if cached is not None and cached[0] > now:
                out[(plural, name)] = cached[1]
                continue
            try:
                obj = await self.client.get(plural, name, namespace=namespace)
                obj.setdefault("kind", "Secret" if plural == "secrets" else "ConfigMap")
            except ApiError as e:
                if e.code != 404:
                    raise
                obj = None
            out[(plural, name)] = obj
            if len(self._cache) > 4096:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            self._cache[key] = (now + self.cache_ttl, obj)
        return out

    async def setup_pod(self, pod: dict, *, pod_ip: str = "", node_ip: str = "") -> dict[str, Volume]:
        """Set up every volume of ``pod`` (idempotent; file volumes are rewritten when their source
        changed). Returns volume name -> Volume. Raises VolumeError (FailedMount) or ApiError."""
        meta, spec = pod["metadata"], pod.get("spec") or {}
        ns = meta.get("namespace", "default")
        refs: set[tuple[str, str]] = set()
        for v in spec.get("volumes") or []:
            refs |= _volume_refs(v)
        sources = await self.fetch(ns, refs)
        for v in spec.get("volumes") or []:
            for i, src in enumerate((v.get("projected") or {}).get("sources") or []):
                if src.get("serviceAccountToken") is not None:
                    try:
                        sources[("token", f"{v.get('name', '')}/{i}")] = \
                            await self.service_account_token(pod, src["serviceAccountToken"])
                    except ApiError as e:
                        raise VolumeError(v.get("name", ""), f"failed to fetch token: {e}") from None
        out: dict[str, Volume] = {}
        for v in spec.get("volumes") or []:
            name = v.get("name", "")
            out[name] = await asyncio.to_thread(self._setup_one, pod, v, sources, pod_ip, node_ip)
        return out

    def _plugin_dir(self, uid: str, plugin: str, name: str) -> str:
        return os.path.join(self.pod_dir(uid), "volumes", f"kubernetes.io~{plugin}", name)

    def _setup_one(self, pod: dict, v: dict, sources: dict, pod_ip: str, node_ip: str) -> Volume:
        uid, name = pod["metadata"]["uid"], v.get("name", "")
        if "hostPath" in v:
            hp = v["hostPath"] or {}
            check_host_path(name, hp.get("path", ""), hp.get("type", ""))
            return Volume(hp.get("path", ""))
        if "emptyDir" in v:
            path = self._plugin_dir(uid, "empty-dir", name)
            os.makedirs(path, exist_ok=True)
            os.chmod(path, 0o777)  # upstream: world-writable so any container user may use it
            if (v["emptyDir"] or {}).get("medium") == "Memory" and not os.path.ismount(path):
                limit = (v["emptyDir"] or {}).get("sizeLimit")
                opts = f"size={quantity.value(limit)}" if limit else "mode=0777"
                r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", path],
                                   capture_output=True, text=True, timeout=10)
                if r.returncode != 0:
                    raise VolumeError(name, f"mount tmpfs failed: {r.stderr.strip()}")
            return Volume(path)
        files: dict[str, tuple[bytes, int]] | None = None
        if "configMap" in v:
            src = v["configMap"] or {}
            plugin = "configmap"
            files = _items_payload(name, "configmap", sources.get(("configmaps", src.get("name", ""))), src,
                                   default_mode=int(src.get("defaultMode") or DEFAULT_MODE))
        elif "secret" in v:
            src = v["secret"] or {}
            plugin = "secret"
            files = _items_payload(name, "secret", sources.get(("secrets", src.get("secretName", ""))), src,
                                   default_mode=int(src.get("defaultMode") or DEFAULT_MODE))
        elif "downwardAPI" in v:
            src = v["downwardAPI"] or {}
            plugin = "downward-api"
            files = downward_payload(name, pod, src, default_mode=int(src.get("defaultMode") or DEFAULT_MODE),
                                     pod_ip=pod_ip, node_ip=node_ip)
        elif "projected" in v:
            src = v["projected"] or {}
            plugin = "projected"
            mode = int(src.get("defaultMode") or DEFAULT_MODE)
            files = {}
            for i, s in enumerate(src.get("sources") or []):
                if s.get("configMap") is not None:
                    cm = s["configMap"]
                    files.update(_items_payload(name, "configmap", sources.get(("configmaps", cm.get("name", ""))),
                                                cm, default_mode=mode))
                elif s.get("secret") is not None:
                    sec = s["secret"]
                    files.update(_items_payload(name, "secret", sources.get(("secrets", sec.get("name", ""))),
                                                sec, default_mode=mode))
                elif s.get("downwardAPI") is not None:
                    files.update(downward_payload(name, pod, s["downwardAPI"], default_mode=mode,
                                                  pod_ip=pod_ip, node_ip=node_ip))
                elif s.get("serviceAccountToken") is not None:
                    token = sources.get(("token", f"{name}/{i}"))
                    if token is None:
                        raise VolumeError(name, "no token fetched for the serviceAccountToken source")
                    files[_safe_relpath(name, s["serviceAccountToken"].get("path") or "token")] = (token, mode)
        if files is None:
            kinds = ", ".join(k for k in v if k != "name") or "none"
            raise VolumeError(name, f"unsupported volume source ({kinds}): kubeling supports emptyDir, hostPath, "
                                    "configMap, secret, downwardAPI and projected")
        path = self._plugin_dir(uid, plugin, name)
        if atomic_write(path, files, volume=name):
            log.info("volume %s of pod %s/%s written (%d files)", name, pod["metadata"].get("namespace"),
                     pod["metadata"].get("name"), len(files))
        return Volume(path, read_only=True)

    async def teardown_pod(self, uid: str) -> None:
        """Unmount the pod's tmpfs emptyDirs and remove its volume directories, then its
        managed etc-hosts and the pod directory once empty (best effort, logged)."""
        self.forget_tokens(uid)
        await asyncio.to_thread(self._teardown, uid)

    def _teardown(self, uid: str) -> None:
        if self._teardown_volumes(uid):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.pod_dir(uid), ETC_HOSTS_FILE))
            with contextlib.suppress(OSError):
                os.rmdir(self.pod_dir(uid))

    def _teardown_volumes(self, uid: str) -> bool:
        """Remove the pod's volume directories; False if a live mount kept them."""
        vols = os.path.join(self.pod_dir(uid), "volumes")
        if not os.path.isdir(vols):
            return True
        empty = os.path.join(vols, "kubernetes.io~empty-dir")
        if os.path.isdir(empty):
            for name in os.listdir(empty):
                path = os.path.join(empty, name)
                if os.path.ismount(path):
                    r = subprocess.run(["umount", path], capture_output=True, text=True, timeout=10)
                    if r.returncode != 0:
                        log.warning("umount %s: %s", path, r.stderr.strip())
                        return False  # never delete through a live mount
        shutil.rmtree(vols, ignore_errors=True)
        return True


def _volume_refs(v: dict) -> set[tuple[str, str]]:
    refs = set()
    if (v.get("configMap") or {}).get("name"):
        refs.add(("configmaps", v["configMap"]["name"]))
    if (v.get("secret") or {}).get("secretName"):
        refs.add(("secrets", v["secret"]["secretName"]))
    for s in (v.get("projected") or {}).get("sources") or []:
        if (s.get("configMap") or {}).get("name"):
            refs.add(("configmaps", s["configMap"]["name"]))
        if (s.get("secret") or {}).get("name"):
            refs.add(("secrets", s["secret"]["name"]))
    return refs
