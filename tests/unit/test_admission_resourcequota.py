"""ResourceQuota admission (check, charge, compare-and-swap on the quota's resourceVersion) and the shared quota
evaluators of kubeling.api.quota, with an in-memory quota store."""
import asyncio
import copy

import pytest

from apiserver import errors
from apiserver.admission import Attributes
from apiserver.admission.resourcequota import ResourceQuota
from apiserver.authn import UserInfo
from kubeling.api import quota


class Info:
    def __init__(self, resource: str, group: str = ""):
        self.resource, self.group = resource, group


class FakeQuotas:
    """resourcequota.QuotaAccess over a dict; ``stale`` makes list() answer an old copy (a lagging cache)."""

    def __init__(self, *quotas):
        self.items = {q["metadata"]["name"]: q for q in quotas}
        for q in quotas:
            q["metadata"].setdefault("resourceVersion", "1")
        self.stale: list[dict] | None = None
        self.writes = 0

    async def list(self, namespace):
        return copy.deepcopy(self.stale if self.stale is not None else list(self.items.values()))

    async def get(self, namespace, name):
        return copy.deepcopy(self.items.get(name))

    async def update_status(self, rq):
        await asyncio.sleep(0)  # let concurrent admissions interleave
        cur = self.items[rq["metadata"]["name"]]
        if cur["metadata"]["resourceVersion"] != rq["metadata"]["resourceVersion"]:
            raise errors.optimistic_lock("resourcequotas", rq["metadata"]["name"])
        new = copy.deepcopy(rq)
        new["metadata"]["resourceVersion"] = str(int(cur["metadata"]["resourceVersion"]) + 1)
        self.items[new["metadata"]["name"]] = new
        self.writes += 1
        return new


def rq(name, hard, used=None, **spec):
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"hard": hard, **spec},
            "status": {"hard": hard, "used": used if used is not None else {k: "0" for k in hard}}}


def pod(name, *, cpu=None, mem=None, limits=None):
    res = {}
    if cpu or mem:
        res["requests"] = {k: v for k, v in (("cpu", cpu), ("memory", mem)) if v}
    if limits:
        res["limits"] = limits
    return {"metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": [{"name": "app", "image": "busybox", "resources": res}]}}


def attrs(name, resource="pods", op="create", group=""):
    return Attributes(op, Info(resource, group), "ns", name, None, UserInfo("u"))


def admit(plugin, obj, resource="pods", op="create", old=None, group=""):
    asyncio.run(plugin.admit(attrs(obj["metadata"]["name"], resource, op, group), obj, old))


def test_third_pod_is_refused_with_upstreams_message():
    store = FakeQuotas(rq("q", {"pods": "2"}))
    plugin = ResourceQuota(store)
    admit(plugin, pod("p1"))
    admit(plugin, pod("p2"))
    assert store.items["q"]["status"]["used"] == {"pods": "2"}
    with pytest.raises(errors.StatusError) as e:
        admit(plugin, pod("p3"))
    assert (e.value.code, e.value.reason) == (403, "Forbidden")
    assert e.value.message == 'pods "p3" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2'


def test_stale_cache_is_caught_by_the_resource_version_compare():
    """The cache still shows used=1 while etcd has 2: the write conflicts, the re-read refuses."""
    store = FakeQuotas(rq("q", {"pods": "2"}, {"pods": "1"}))
    plugin = ResourceQuota(store)
    store.stale = copy.deepcopy(list(store.items.values()))
    admit(plugin, pod("p2"))
    with pytest.raises(errors.StatusError, match="used: pods=2, limited: pods=2"):
        admit(plugin, pod("p3"))


def test_concurrent_creates_cannot_both_take_the_last_slot():
    store = FakeQuotas(rq("q", {"pods": "3"}, {"pods": "2"}))
    plugins = [ResourceQuota(store), ResourceQuota(store)]  # two apiservers: no shared lock

    async def run():
        return await asyncio.gather(*(p.admit(attrs(f"p{i}"), pod(f"p{i}"), None) for i, p in enumerate(plugins)),
                                    return_exceptions=True)
    results = asyncio.run(run())
    assert sorted(type(r).__name__ for r in results) == ["NoneType", "StatusError"]
    assert store.items["q"]["status"]["used"] == {"pods": "3"}


def test_compute_resources_and_constraints():
    store = FakeQuotas(rq("compute", {"requests.cpu": "1", "requests.memory": "1Gi", "pods": "10"}))
    plugin = ResourceQuota(store)
    admit(plugin, pod("a", cpu="600m", mem="512Mi"))
    assert store.items["compute"]["status"]["used"] == {"pods": "1", "requests.cpu": "600m",
                                                        "requests.memory": "512Mi"}
    with pytest.raises(errors.StatusError) as e:
        admit(plugin, pod("b", cpu="500m", mem="1Mi"))
    assert e.value.message == ('pods "b" is forbidden: exceeded quota: compute, requested: requests.cpu=500m, '
                               'used: requests.cpu=600m, limited: requests.cpu=1')
    with pytest.raises(errors.StatusError) as e:
        admit(plugin, pod("c", cpu="100m"))
    assert e.value.message == 'pods "c" is forbidden: failed quota: compute: must specify requests.memory for: app'


def test_status_unknown_until_the_controller_counted():
    plugin = ResourceQuota(FakeQuotas(rq("q", {"pods": "2"}, used={})))
    with pytest.raises(errors.StatusError, match="status unknown for quota: q, resources: pods"):
        admit(plugin, pod("p"))


def test_quota_without_status_hard_limits_nothing():
    q = rq("q", {"pods": "0"})
    q["status"] = {}
    store = FakeQuotas(q)
    admit(ResourceQuota(store), pod("p"))
    assert store.writes == 0


def test_object_counts_and_services():
    store = FakeQuotas(rq("q", {"services": "1", "services.nodeports": "1", "count/deployments.apps": "1",
                                "configmaps": "1"}))
    plugin = ResourceQuota(store)
    svc = {"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 81}]}}
    with pytest.raises(errors.StatusError, match="requested: services.nodeports=2, used: services.nodeports=0"):
        admit(plugin, svc, resource="services")
    admit(plugin, {"metadata": {"name": "d"}}, resource="deployments", group="apps")
    with pytest.raises(errors.StatusError, match=r'deployments.apps "e" is forbidden: exceeded quota: q, '
                                                 r'requested: count/deployments.apps=1'):
        admit(plugin, {"metadata": {"name": "e"}}, resource="deployments", group="apps")
    admit(plugin, {"metadata": {"name": "cm"}}, resource="configmaps")
    assert store.items["q"]["status"]["used"]["configmaps"] == "1"


def test_scopes():
    store = FakeQuotas(rq("be", {"pods": "0"}, scopes=["BestEffort"]))
    plugin = ResourceQuota(store)
    admit(plugin, pod("burstable", cpu="100m"))
    with pytest.raises(errors.StatusError, match="exceeded quota: be"):
        admit(plugin, pod("besteffort"))


def test_updates_charge_only_growth():
    store = FakeQuotas(rq("q", {"services.loadbalancers": "0"}))
    plugin = ResourceQuota(store)
    old = {"metadata": {"name": "s"}, "spec": {"type": "ClusterIP"}}
    admit(plugin, copy.deepcopy(old), resource="services", op="update", old=old)
    lb = {"metadata": {"name": "s"}, "spec": {"type": "LoadBalancer"}}
    with pytest.raises(errors.StatusError, match="services.loadbalancers"):
        admit(plugin, lb, resource="services", op="update", old=old)


def test_pod_usage():
    p = {"spec": {"containers": [{"resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "200m"}}},
                                 {"resources": {"requests": {"cpu": "300m", "memory": "1Gi"}}}],
                  "initContainers": [{"resources": {"requests": {"cpu": "1"}}}]}}
    assert quota.format_list(quota.pod_usage(p)) == {
        "count/pods": "1", "cpu": "1", "limits.cpu": "200m", "memory": "1Gi", "pods": "1", "requests.cpu": "1",
        "requests.memory": "1Gi"}
    p["status"] = {"phase": "Succeeded"}
    assert quota.format_list(quota.pod_usage(p)) == {"count/pods": "1"}


def test_pretty_print_sorted():
    assert quota.pretty_print({"requests.cpu": quota.parse_list({"x": "500m"})["x"], "pods": 1}) == \
        "pods=1,requests.cpu=500m"


def test_dry_run_is_checked_but_not_charged():
    store = FakeQuotas(rq("q", {"pods": "1"}))
    plugin = ResourceQuota(store)
    asyncio.run(plugin.admit(attrs("p1")._replace(dry_run=True), pod("p1"), None))
    assert store.writes == 0
    admit(plugin, pod("p1"))
    with pytest.raises(errors.StatusError, match="exceeded quota"):
        asyncio.run(plugin.admit(attrs("p2")._replace(dry_run=True), pod("p2"), None))
