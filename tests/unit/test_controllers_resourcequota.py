"""The resourcequota controller's recount and replenishment, with fake informers and a recording client."""
import asyncio

from controllers.resourcequota import ResourceQuotaController


class Lister:
    def __init__(self, items):
        self.items = {f'{i["metadata"].get("namespace")}/{i["metadata"]["name"]}': i for i in items}

    def get(self, name, namespace=None):
        return self.items.get(f"{namespace}/{name}")

    def list(self, namespace=None, match=None):
        return [i for i in self.items.values()
                if (namespace is None or i["metadata"].get("namespace") == namespace) and (match is None or match(i))]


class Informer:
    def __init__(self, items=()):
        self.lister = Lister(list(items))
        self.handlers = {}

    def add_handlers(self, **kw):
        self.handlers.update(kw)


class Client:
    def __init__(self, live=None):
        self.statuses, self.live = [], live or {}

    async def replace(self, resource, obj, subresource=None):
        self.statuses.append((resource, obj["metadata"]["name"], subresource, obj["status"]))
        return obj

    async def replace_status(self, resource, obj):
        return await self.replace(resource, obj, subresource="status")

    async def list(self, resource, namespace=None):
        return {"items": self.live.get(resource.plural, [])}


def obj(name, ns="ns", **rest):
    return {"metadata": {"name": name, "namespace": ns}, **rest}


def pod(name, ns="ns", phase="Running", cpu=None):
    res = {"requests": {"cpu": cpu}} if cpu else {}
    return obj(name, ns, spec={"containers": [{"name": "c", "resources": res}]}, status={"phase": phase})


def controller(quotas, pods=(), services=(), client=None, **more):
    informers = {"pods": Informer(pods), "services": Informer(services)}
    informers.update({k: Informer(v) for k, v in more.items()})
    qi = Informer(quotas)
    c = ResourceQuotaController(client or Client(), qi, informers, sync_period=3600)
    return c, qi, informers


def test_recount_sets_hard_and_used():
    q = obj("q", spec={"hard": {"pods": "5", "requests.cpu": "2", "services": "3", "secrets": "1"}})
    c, _, _ = controller([q], pods=[pod("a", cpu="500m"), pod("b", cpu="250m"), pod("done", phase="Succeeded"),
                                    pod("elsewhere", ns="other")],
                         services=[obj("s")], secrets=[])
    asyncio.run(c.sync("ns/q"))
    assert c.client.statuses == [("resourcequotas", "q", "status", {
        "hard": {"pods": "5", "requests.cpu": "2", "services": "3", "secrets": "1"},
        "used": {"pods": "2", "requests.cpu": "750m", "secrets": "0", "services": "1"}})]


def test_unchanged_status_is_not_written():
    hard = {"pods": "5"}
    q = obj("q", spec={"hard": hard}, status={"hard": hard, "used": {"pods": "1"}})
    c, _, _ = controller([q], pods=[pod("a")])
    asyncio.run(c.sync("ns/q"))
    assert c.client.statuses == []


def test_count_of_other_resources_is_listed_live():
    q = obj("q", spec={"hard": {"count/deployments.apps": "2"}})
    client = Client(live={"deployments": [obj("d1"), obj("d2")]})
    c, _, _ = controller([q], client=client)
    asyncio.run(c.sync("ns/q"))
    assert client.statuses[0][3]["used"] == {"count/deployments.apps": "2"}


async def test_replenishment_queues_quotas_of_the_namespace_tracking_the_resource():
    pods_q = obj("pods-q", spec={"hard": {"pods": "1"}})
    cm_q = obj("cm-q", spec={"hard": {"configmaps": "1"}})
    other = obj("other", ns="other", spec={"hard": {"pods": "1"}})
    c, qi, inf = controller([pods_q, cm_q, other], configmaps=[])
    inf["pods"].handlers["on_delete"](pod("gone"))
    assert len(c.queue) == 1
    inf["pods"].handlers["on_update"](pod("x"), pod("x", phase="Failed"))  # became terminal
    inf["pods"].handlers["on_update"](pod("y"), pod("y"))  # no change in usage: nothing
    inf["configmaps"].handlers["on_delete"](obj("cm"))
    assert len(c.queue) == 2
    keys = []
    while len(c.queue):
        keys.append(await c.queue.get())
    assert sorted(keys) == ["ns/cm-q", "ns/pods-q"]


async def test_quota_updates_queue_only_when_status_does_not_match_spec():
    hard = {"pods": "1"}
    synced = obj("q", spec={"hard": hard}, status={"hard": hard, "used": {"pods": "0"}})
    c, qi, _ = controller([synced])
    qi.handlers["on_update"](synced, synced)  # e.g. an admission charge: no recount
    assert len(c.queue) == 0
    qi.handlers["on_update"](synced, obj("q", spec={"hard": {"pods": "2"}}, status=synced["status"]))
    assert len(c.queue) == 1
