"""Writing pod statuses to the apiserver, only when they change.

The kubelet recomputes a pod's status after every sync (several times a
second across all pods); the status manager compares it with what it last
wrote and with what the apiserver has, ignoring condition timestamps, and
PUTs ``pods/NAME/status`` only on a real change. A 409 Conflict is retried
on a freshly read object; a pod that is gone (404) or replaced (other uid)
is skipped. Mirrors pkg/kubelet/status/status_manager.go (SetPodStatus,
syncPod, needsUpdate, isPodStatusByKubeletEqual).
"""
from __future__ import annotations

import copy
import logging

from kubelet.pod_status import strip_times
from kubeling.client import ApiError, Client

log = logging.getLogger(__name__)


class StatusManager:
    """``StatusManager(client)``; ``await set_pod_status(pod, status)``."""

    def __init__(self, client: Client):
        self.client = client
        self._written: dict[str, dict] = {}  # uid -> last status written (times stripped)

    def cached(self, uid: str) -> dict | None:
        """The last status written for pod ``uid`` (timestamps stripped), or None."""
        return self._written.get(uid)

    def forget(self, uid: str) -> None:
        """Drop what is remembered about ``uid`` (pod deleted)."""
        self._written.pop(uid, None)

    async def set_pod_status(self, pod: dict, status: dict, *, attempts: int = 3) -> bool:
        """Write ``status`` for ``pod`` (the informer's object) if it changed.
        Returns True if a write happened. Raises ApiError on failures other
        than 404 and repeated 409, httpx errors when unreachable."""
        uid = pod["metadata"]["uid"]
        want = strip_times(status)
        if self._written.get(uid) == want or strip_times(pod.get("status") or {}) == want:
            self._written[uid] = want
            return False
        obj = copy.deepcopy(pod)
        for i in range(attempts):
            obj["status"] = status
            try:
                await self.client.replace_status("pods", obj)
                self._written[uid] = want
                return True
            except ApiError as e:
                if e.code == 404:
                    return False
                if e.code != 409 or i == attempts - 1:
                    raise
            meta = pod["metadata"]
            try:
                obj = await self.client.get("pods", meta["name"], namespace=meta.get("namespace"))
            except ApiError as e:
                if e.code == 404:
                    return False
                raise
            if obj["metadata"].get("uid") != uid:
                return False
        return False
