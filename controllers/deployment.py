"""The Deployment controller: one ReplicaSet per pod template, rolled out
by RollingUpdate or Recreate, scaled proportionally, status and conditions
kept so that ``kubectl rollout status`` can follow.

Mirrors pkg/controller/deployment (deployment_controller.go, sync.go,
rolling.go, recreate.go, progress.go). The arithmetic lives in
controllers.deployment_util; this module reads listers and writes the API.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from kubeling.client import ApiError, Client, Informer, deep_copy, meta_key, split_key
from kubeling.client.record import NORMAL, WARNING, EventRecorder
from controllers import deployment_util as du
from controllers.controller_utils import (BaseController, claim_objects, controller_ref, get_controller_of,
                                          labels_of, resolve_controller_ref, selector_of, write_status)

log = logging.getLogger(__name__)


class DeploymentController(BaseController):
    """Reconciles Deployments (apps/v1) against their ReplicaSets."""

    name = "deployment"

    def __init__(self, client: Client, d_informer: Informer, rs_informer: Informer, pod_informer: Informer, *,
                 recorder: EventRecorder | None = None, clock: Callable[[], float] = time.time):
        super().__init__(client, [d_informer, rs_informer, pod_informer])
        self.clock = clock  # epoch seconds, for the progress deadline
        self.d_lister = d_informer.lister
        self.rs_lister = rs_informer.lister
        self.pod_lister = pod_informer.lister
        self.recorder = recorder or EventRecorder(client, "deployment-controller")
        d_informer.add_handlers(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new),
                                on_delete=self.enqueue)
        rs_informer.add_handlers(on_add=self._add_rs, on_update=self._update_rs, on_delete=self._delete_rs)
        pod_informer.add_handlers(on_delete=self._delete_pod)

    # -- event handlers ------------------------------------------------------------------
    def _owner(self, rs: dict) -> dict | None:
        return resolve_controller_ref(rs, self.d_lister, "Deployment")

    def _matching_deployments(self, rs: dict) -> list[dict]:
        return self.d_lister.list(rs["metadata"].get("namespace"),
                                  match=lambda d: selector_of(d).matches(labels_of(rs)))

    def _add_rs(self, rs: dict) -> None:
        if get_controller_of(rs) is not None:
            d = self._owner(rs)
            if d is not None:
                self.enqueue(d)
            return
        for d in self._matching_deployments(rs):
            self.enqueue(d)

    def _update_rs(self, old: dict, new: dict) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        old_ref, new_ref = get_controller_of(old), get_controller_of(new)
        if old_ref and (new_ref or {}).get("uid") != old_ref.get("uid"):
            d = self._owner(old)
            if d is not None:
                self.enqueue(d)
        if new_ref:
            d = self._owner(new)
            if d is not None:
                self.enqueue(d)
            return
        if labels_of(old) != labels_of(new) or old_ref:
            for d in self._matching_deployments(new):
                self.enqueue(d)

    def _delete_rs(self, rs: dict) -> None:
        d = self._owner(rs)
        if d is not None:
            self.enqueue(d)

    def _delete_pod(self, pod: dict) -> None:
        # Recreate waits for every old pod to be gone before creating new ones.
        rs = resolve_controller_ref(pod, self.rs_lister, "ReplicaSet")
        d = self._owner(rs) if rs is not None else None
        if d is not None and not du.is_rolling(d):
            self.enqueue(d)

    # -- reconcile ----------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        """Reconcile one Deployment ``namespace/name`` (mirrors DeploymentController.syncDeployment): adopt/orphan
        ReplicaSets, roll out or scale, clean up old ones, update status; a raise makes the worker retry rate-limited.
        """
        ns, name = split_key(key)
        cached = self.d_lister.get(name, ns)
        if cached is None:
            return
        d = deep_copy(cached)
        if selector_of(d).empty():
            self.recorder.event(d, WARNING, "SelectingAll",
                                "This deployment is selecting all pods. A non-empty selector is required.")
            return
        rs_list = [deep_copy(rs) for rs in await self._get_replica_sets(d)]
        if d["metadata"].get("deletionTimestamp"):
            new_rs, old_rss = await self._get_all_replica_sets(d, rs_list, create=False)
            await self._sync_status(_all(new_rs, old_rss), new_rs, d)
            return
        await self._check_paused_conditions(d)
        if (d.get("spec") or {}).get("paused") or await self._is_scaling_event(d, rs_list):
            await self._scale_sync(d, rs_list)
            return
        if du.is_rolling(d):
            await self._rollout_rolling(d, rs_list)
        else:
            await self._rollout_recreate(d, rs_list)

    async def _get_replica_sets(self, d: dict) -> list[dict]:
        ns = d["metadata"].get("namespace")
        adopt_ok: list[bool] = []

        async def can_adopt() -> bool:
            if not adopt_ok:
                try:
                    fresh = await self.client.get("deployments", d["metadata"]["name"], namespace=ns)
                    adopt_ok.append(fresh["metadata"].get("uid") == d["metadata"].get("uid")
                                    and not fresh["metadata"].get("deletionTimestamp"))
                except ApiError as e:
                    if e.code != 404:
                        raise
                    adopt_ok.append(False)
            return adopt_ok[0]

        return await claim_objects(self.client, d, self.rs_lister.list(ns), "replicasets", can_adopt=can_adopt)

    async def _get_all_replica_sets(self, d: dict, rs_list: list[dict], *,
                                    create: bool) -> tuple[dict | None, list[dict]]:
        """(new RS or None, old RSes), syncing the revision annotations
        (getAllReplicaSetsAndSyncRevision); creates the new RS when ``create``."""
        template = (d.get("spec") or {}).get("template")
        ordered = sorted(rs_list, key=du.creation_key)
        existing = next((rs for rs in ordered if du.equal_ignore_hash((rs.get("spec") or {}).get("template"),
                                                                      template)), None)
        old_rss = [rs for rs in ordered if rs is not existing]
        new_rs = await self._get_new_replica_set(d, rs_list, old_rss, existing, create=create)
        return new_rs, old_rss

    async def _get_new_replica_set(self, d: dict, rs_list: list[dict], old_rss: list[dict],
                                   existing: dict | None, *, create: bool) -> dict | None:
        new_revision = du.max_revision(old_rss) + 1
        ns = d["metadata"].get("namespace")
        if existing is not None:
            rs = deep_copy(existing)
            changed = du.set_new_rs_annotations(d, rs, new_revision, exists=True)
            min_ready = (d.get("spec") or {}).get("minReadySeconds") or 0
            if (rs["spec"].get("minReadySeconds") or 0) != min_ready:
                rs["spec"]["minReadySeconds"] = min_ready
                changed = True
            if changed:
                existing.clear()
                existing.update(await self.client.replace("replicasets", rs))
            await self._set_deployment_revision(d, du.revision(existing))
            return existing
        if not create:
            return None
        collision_count = (d.get("status") or {}).get("collisionCount")
        template = deep_copy((d.get("spec") or {}).get("template") or {})
        pod_hash = du.compute_hash(template, collision_count)
        template.setdefault("metadata", {}).setdefault("labels", {})[du.DEFAULT_POD_TEMPLATE_HASH_LABEL] = pod_hash
        selector = deep_copy((d.get("spec") or {}).get("selector") or {})
        selector.setdefault("matchLabels", {})[du.DEFAULT_POD_TEMPLATE_HASH_LABEL] = pod_hash
        rs_name = f"{d['metadata']['name']}-{pod_hash}"
        new_rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                  "metadata": {"name": rs_name, "namespace": ns, "ownerReferences": [controller_ref(d)],
                               "labels": dict(template["metadata"]["labels"])},
                  "spec": {"replicas": 0, "minReadySeconds": (d.get("spec") or {}).get("minReadySeconds") or 0,
                           "selector": selector, "template": template}}
        new_rs["spec"]["replicas"] = du.new_rs_new_replicas(d, old_rss + [new_rs], new_rs)
        du.set_new_rs_annotations(d, new_rs, new_revision, exists=False)
        try:
            created = await self.client.create("replicasets", new_rs, namespace=ns)
        except ApiError as e:
            if e.code != 409:
                raise
            # Same name exists: ours with the same template (a lagging cache), or a hash collision.
            current = await self.client.get("replicasets", rs_name, namespace=ns)
            ref = get_controller_of(current)
            if (ref or {}).get("uid") == d["metadata"].get("uid") and du.equal_ignore_hash(
                    current["spec"].get("template"), d["spec"].get("template")):
                rs_list.append(current)
                return current
            status = deep_copy(d.get("status") or {})
            status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
            obj = deep_copy(d)
            obj["status"] = status
            await self.client.replace_status("deployments", obj)
            raise RuntimeError(f"hash collision for ReplicaSet {rs_name}; collisionCount now "
                               f"{status['collisionCount']}") from e
        rs_list.append(created)
        if du.replicas(created) > 0:
            self.recorder.event(d, NORMAL, "ScalingReplicaSet",
                                f"Scaled up replica set {rs_name} from 0 to {du.replicas(created)}")
        await self._set_deployment_revision(d, du.revision(created))
        du.set_condition(d.setdefault("status", {}), "Progressing", "True", "NewReplicaSetCreated",
                         f'Created new replica set "{rs_name}"')
        return created

    async def _set_deployment_revision(self, d: dict, rev: int) -> None:
        """Keep the Deployment's revision annotation equal to its new RS's (kubectl rollout history reads it)."""
        ann = d["metadata"].setdefault("annotations", {})
        if rev and ann.get(du.REVISION_ANNOTATION) != str(rev):
            ann[du.REVISION_ANNOTATION] = str(rev)
            patched = await self.client.patch(
                "deployments", d["metadata"]["name"],
                {"metadata": {"annotations": {du.REVISION_ANNOTATION: str(rev)}}},
                namespace=d["metadata"].get("namespace"))
            # The status write that follows must not conflict with our own patch.
            d["metadata"]["resourceVersion"] = patched["metadata"].get("resourceVersion")

    async def _scale_rs(self, rs: dict, new_scale: int, d: dict) -> bool:
        """Set spec.replicas and the replica annotations of ``rs`` (in place); True when written."""
        old_scale = du.replicas(rs)
        copy_ = deep_copy(rs)
        annotations_changed = du.set_replicas_annotations(copy_, du.replicas(d), du.replicas(d) + du.max_surge(d))
        if old_scale == new_scale and not annotations_changed:
            return False
        copy_["spec"]["replicas"] = new_scale
        updated = await self.client.replace("replicasets", copy_)
        rs.clear()
        rs.update(updated)
        if old_scale != new_scale:
            direction = "up" if new_scale > old_scale else "down"
            self.recorder.event(d, NORMAL, "ScalingReplicaSet",
                                f"Scaled {direction} replica set {rs['metadata']['name']} "
                                f"from {old_scale} to {new_scale}")
        return old_scale != new_scale

    # -- scaling (sync.go) ---------------------------------------------------------------
    async def _is_scaling_event(self, d: dict, rs_list: list[dict]) -> bool:
        new_rs, old_rss = await self._get_all_replica_sets(d, rs_list, create=False)
        for rs in du.filter_active(_all(new_rs, old_rss)):
            desired = ((rs.get("metadata") or {}).get("annotations") or {}).get(du.DESIRED_REPLICAS_ANNOTATION)
            if desired is not None and desired != str(du.replicas(d)):
                return True
        return False

    async def _scale_sync(self, d: dict, rs_list: list[dict]) -> None:
        new_rs, old_rss = await self._get_all_replica_sets(d, rs_list, create=False)
        await self._scale(d, new_rs, old_rss)
        await self._sync_status(_all(new_rs, old_rss), new_rs, d)

    async def _scale(self, d: dict, new_rs: dict | None, old_rss: list[dict]) -> None:
        everything = _all(new_rs, old_rss)
        active = du.filter_active(everything)
        target = None
        if len(active) == 1:
            target = active[0]
        elif not active and everything:
            target = new_rs or max(old_rss, key=du.creation_key)
        if target is not None or not active:
            if target is not None:
                await self._scale_rs(target, du.replicas(d), d)
            return
        if new_rs is not None and du.replicas(new_rs) == du.replicas(d) and \
                int((new_rs.get("status") or {}).get("availableReplicas") or 0) == du.replicas(d):
            for rs in du.filter_active(old_rss):
                await self._scale_rs(rs, 0, d)
            return
        if du.is_rolling(d):
            sizes = du.proportional_sizes(d, active)
            for rs in active:
                await self._scale_rs(rs, sizes[rs["metadata"]["name"]], d)

    # -- RollingUpdate (rolling.go) -------------------------------------------------------
    async def _rollout_rolling(self, d: dict, rs_list: list[dict]) -> None:
        new_rs, old_rss = await self._get_all_replica_sets(d, rs_list, create=True)
        all_rss = _all(new_rs, old_rss)
        if await self._reconcile_new_rs(all_rss, new_rs, d):
            await self._sync_rollout_status(all_rss, new_rs, d)
            return
        if await self._reconcile_old_rss(all_rss, du.filter_active(old_rss), new_rs, d):
            await self._sync_rollout_status(all_rss, new_rs, d)
            return
        if du.deployment_complete(d, du.calculate_status(all_rss, new_rs, d)):
            await self._cleanup(old_rss, d)
        await self._sync_rollout_status(all_rss, new_rs, d)

    async def _reconcile_new_rs(self, all_rss: list[dict], new_rs: dict, d: dict) -> bool:
        if du.replicas(new_rs) == du.replicas(d):
            return False
        if du.replicas(new_rs) > du.replicas(d):
            return await self._scale_rs(new_rs, du.replicas(d), d)
        return await self._scale_rs(new_rs, du.new_rs_new_replicas(d, all_rss, new_rs), d)

    async def _reconcile_old_rss(self, all_rss: list[dict], old_rss: list[dict], new_rs: dict, d: dict) -> bool:
        """Scale old ReplicaSets down within maxUnavailable: unhealthy replicas
        first, then the oldest ReplicaSets (reconcileOldReplicaSets)."""
        if sum(du.replicas(rs) for rs in old_rss) == 0:
            return False
        min_available = du.replicas(d) - du.max_unavailable(d)
        new_unavailable = du.replicas(new_rs) - int((new_rs.get("status") or {}).get("availableReplicas") or 0)
        max_scaled_down = sum(du.replicas(rs) for rs in all_rss) - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        cleaned = 0
        for rs in sorted(old_rss, key=du.creation_key):
            if cleaned >= max_scaled_down:
                break
            available = int((rs.get("status") or {}).get("availableReplicas") or 0)
            if du.replicas(rs) == 0 or du.replicas(rs) == available:
                continue
            n = min(max_scaled_down - cleaned, du.replicas(rs) - available)
            await self._scale_rs(rs, du.replicas(rs) - n, d)
            cleaned += n
        available_total = sum(int((rs.get("status") or {}).get("availableReplicas") or 0) for rs in all_rss)
        scaled = 0
        if available_total > min_available:
            total = available_total - min_available
            for rs in sorted(old_rss, key=du.creation_key):
                if scaled >= total:
                    break
                if du.replicas(rs) == 0:
                    continue
                n = min(du.replicas(rs), total - scaled)
                await self._scale_rs(rs, du.replicas(rs) - n, d)
                scaled += n
        return cleaned + scaled > 0

    # -- Recreate (recreate.go) -----------------------------------------------------------
    async def _rollout_recreate(self, d: dict, rs_list: list[dict]) -> None:
        new_rs, old_rss = await self._get_all_replica_sets(d, rs_list, create=False)
        scaled_down = False
        for rs in du.filter_active(old_rss):
            scaled_down = await self._scale_rs(rs, 0, d) or scaled_down
        if scaled_down or self._old_pods_running(new_rs, old_rss):
            await self._sync_rollout_status(_all(new_rs, old_rss), new_rs, d)
            return
        if new_rs is None:
            new_rs, old_rss = await self._get_all_replica_sets(d, rs_list, create=True)
        await self._scale_rs(new_rs, du.replicas(d), d)
        all_rss = _all(new_rs, old_rss)
        if du.deployment_complete(d, du.calculate_status(all_rss, new_rs, d)):
            await self._cleanup(old_rss, d)
        await self._sync_rollout_status(all_rss, new_rs, d)

    def _old_pods_running(self, new_rs: dict | None, old_rss: list[dict]) -> bool:
        if sum(int((rs.get("status") or {}).get("replicas") or 0) for rs in old_rss) > 0:
            return True
        old_uids = {rs["metadata"].get("uid") for rs in old_rss}
        for pod in self.pod_lister.list(old_rss[0]["metadata"].get("namespace") if old_rss else None):
            ref = get_controller_of(pod)
            if ref and ref.get("uid") in old_uids and \
                    (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                return True
        return False

    # -- status (sync.go, progress.go) ----------------------------------------------------
    async def _cleanup(self, old_rss: list[dict], d: dict) -> None:
        """Delete old ReplicaSets beyond spec.revisionHistoryLimit (cleanupDeployment)."""
        limit = (d.get("spec") or {}).get("revisionHistoryLimit")
        limit = du.DEFAULT_REVISION_HISTORY_LIMIT if limit is None else int(limit)
        cleanable = [rs for rs in old_rss if not rs["metadata"].get("deletionTimestamp")]
        diff = len(cleanable) - limit
        if diff <= 0:
            return
        for rs in sorted(cleanable, key=lambda r: (du.revision(r), du.creation_key(r)))[:diff]:
            st = rs.get("status") or {}
            if du.replicas(rs) != 0 or int(st.get("replicas") or 0) != 0 or \
                    rs["metadata"].get("generation", 0) > st.get("observedGeneration", 0):
                continue
            try:
                await self.client.delete("replicasets", rs["metadata"]["name"],
                                         namespace=rs["metadata"].get("namespace"))
            except ApiError as e:
                if e.code != 404:
                    raise

    async def _sync_rollout_status(self, all_rss: list[dict], new_rs: dict | None, d: dict) -> None:
        """Status plus the Progressing condition (syncRolloutStatus): complete, progressing, or
        ProgressDeadlineExceeded once progressDeadlineSeconds pass without progress; a rollout with
        no news is requeued for that check (requeueStuckDeployment)."""
        status = du.calculate_status(all_rss, new_rs, d)
        has_deadline = du.has_progress_deadline(d)
        if not has_deadline:
            du.remove_condition(status, "Progressing")
        current = du.get_condition(status, "Progressing")
        complete_already = (status["replicas"] == status["updatedReplicas"] and current is not None
                            and current.get("reason") == "NewReplicaSetAvailable")
        if has_deadline and not complete_already:
            what = f'ReplicaSet "{new_rs["metadata"]["name"]}"' if new_rs else f'Deployment "{d["metadata"]["name"]}"'
            if du.deployment_complete(d, status):
                du.set_condition(status, "Progressing", "True", "NewReplicaSetAvailable",
                                 f"{what} has successfully progressed.")
            elif du.deployment_progressing(d, status):
                du.set_condition(status, "Progressing", "True", "ReplicaSetUpdated", f"{what} is progressing.",
                                 refresh=True)
            elif du.deployment_timed_out(d, status, self.clock()):
                du.set_condition(status, "Progressing", "False", du.TIMED_OUT_REASON,
                                 f"{what} has timed out progressing.")
        if status == (d.get("status") or {}):
            after = du.stuck_requeue_after(d, status, self.clock())
            log.debug("deployment %s: status unchanged; progress deadline check in %s s", meta_key(d), after)
            if after == 0.0:
                self.queue.add_rate_limited(meta_key(d))
            elif after is not None:
                self.queue.add_after(meta_key(d), after)
            return
        await self._write_status(d, status)

    async def _check_paused_conditions(self, d: dict) -> None:
        """Progressing Unknown DeploymentPaused / DeploymentResumed when spec.paused flips, so a paused
        rollout does not time out and a resumed one restarts its deadline (checkPausedConditions)."""
        if not du.has_progress_deadline(d):
            return
        status = d.setdefault("status", {})
        cond = du.get_condition(status, "Progressing")
        if cond is not None and cond.get("reason") == du.TIMED_OUT_REASON:
            return  # a reported lack of progress is not overwritten
        paused_cond = cond is not None and cond.get("reason") == du.PAUSED_REASON
        paused = bool((d.get("spec") or {}).get("paused"))
        if paused and not paused_cond:
            du.set_condition(status, "Progressing", "Unknown", du.PAUSED_REASON, "Deployment is paused")
        elif not paused and paused_cond:
            du.set_condition(status, "Progressing", "Unknown", du.RESUMED_REASON, "Deployment is resumed")
        else:
            return
        d.update(await self.client.replace_status("deployments", d))

    async def _sync_status(self, all_rss: list[dict], new_rs: dict | None, d: dict) -> None:
        await self._write_status(d, du.calculate_status(all_rss, new_rs, d))

    async def _write_status(self, d: dict, status: dict) -> None:
        await write_status(self.client, "deployments", d, status)


def _all(new_rs: dict | None, old_rss: list[dict]) -> list[dict]:
    return old_rss + ([new_rs] if new_rs is not None else [])
