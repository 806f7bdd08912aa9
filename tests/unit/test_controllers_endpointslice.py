"""EndpointSlice controller: slices per port list with ready/serving/terminating conditions,
labels and owner, and reconciling (keep, replace, create, delete) over informer stores and a fake client."""
from kubeling.client import Informer, meta_key
from controllers.endpointslice import (CONTROLLER_NAME, MANAGED_BY_LABEL, SERVICE_NAME_LABEL,
                                       EndpointSliceController, desired_slices, slice_labels)
from test_controllers_endpoints import SVC, pod


class FakeClient:
    """Records writes; creates get a generated name."""

    def __init__(self):
        self.calls = []
        self.n = 0

    async def create(self, resource, obj, *, namespace=None, **kw):
        self.n += 1
        out = {**obj, "metadata": {**obj["metadata"], "name": f"{obj['metadata']['generateName']}{self.n}"}}
        self.calls.append(("create", resource, out))
        return out

    async def replace(self, resource, obj, **kw):
        self.calls.append(("replace", resource, obj))
        return obj

    async def delete(self, resource, name, *, namespace=None, **kw):
        self.calls.append(("delete", resource, name))
        return {}


SERVICE = {**SVC, "metadata": {**SVC["metadata"], "uid": "svc-uid", "labels": {"tier": "front"}}}


def test_desired_slices_conditions_and_port_groups():
    pods = [pod("b", "10.0.0.10"), pod("a", "10.0.0.9", ready=False), pod("noip", None),
            pod("gone", "10.0.0.11", deleting=True), pod("other", "10.0.0.2", port=9090)]
    [(ports1, eps1), (ports2, eps2)] = desired_slices(SERVICE, pods)
    assert ports1 == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert [e["addresses"] for e in eps1] == [["10.0.0.9"], ["10.0.0.10"], ["10.0.0.11"]]
    assert [e["conditions"] for e in eps1] == [
        {"ready": False, "serving": False, "terminating": False},
        {"ready": True, "serving": True, "terminating": False},
        {"ready": False, "serving": True, "terminating": True}]
    assert eps1[1]["targetRef"] == {"kind": "Pod", "namespace": "default", "name": "b", "uid": "u-b"}
    assert eps1[1]["nodeName"] == "n1"
    assert ports2[0]["port"] == 9090 and eps2[0]["addresses"] == ["10.0.0.2"]
    many = [pod(f"p{i}", f"10.0.1.{i}") for i in range(5)]
    assert [len(e) for _, e in desired_slices(SERVICE, many, max_per_slice=2)] == [2, 2, 1]


def test_labels():
    assert slice_labels(SERVICE) == {"tier": "front", SERVICE_NAME_LABEL: "web", MANAGED_BY_LABEL: CONTROLLER_NAME}
    headless = {**SERVICE, "spec": {**SERVICE["spec"], "clusterIP": "None"}}
    assert slice_labels(headless)["service.kubernetes.io/headless"] == ""


def controller(pods=(), slices=(), services=(SERVICE,)):
    client = FakeClient()
    svc_inf, pod_inf, es_inf = Informer(client, "services"), Informer(client, "pods"), Informer(client,
                                                                                                 "endpointslices")
    for store, objs in ((svc_inf.store, services), (pod_inf.store, pods), (es_inf.store, slices)):
        for o in objs:
            store[meta_key(o)] = o
    return client, EndpointSliceController(client, svc_inf, pod_inf, es_inf), es_inf


async def test_creates_once_then_keeps_then_replaces_then_deletes():
    client, c, es_inf = controller([pod("a", "10.0.0.1")])
    await c.sync("default/web")
    [(verb, resource, created)] = client.calls
    assert (verb, resource) == ("create", "endpointslices")
    meta = created["metadata"]
    assert meta["generateName"] == "web-" and meta["labels"][SERVICE_NAME_LABEL] == "web"
    assert meta["ownerReferences"] == [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "svc-uid",
                                        "controller": True, "blockOwnerDeletion": True}]
    assert created["addressType"] == "IPv4" and created["endpoints"][0]["addresses"] == ["10.0.0.1"]
    # The informer has not shown the slice yet: a second sync neither creates nor changes anything.
    client.calls.clear()
    await c.sync("default/web")
    assert client.calls == []
    es_inf.store[meta_key(created)] = created
    # The pod becomes not ready: the slice is replaced in place.
    p = pod("a", "10.0.0.1", ready=False)
    c.informers[1].store[meta_key(p)] = p
    await c.sync("default/web")
    [(verb, _, replaced)] = client.calls
    assert verb == "replace" and replaced["metadata"]["name"] == meta["name"]
    assert replaced["endpoints"][0]["conditions"]["ready"] is False
    # The service goes: its slices are deleted.
    client.calls.clear()
    del c.informers[0].store["default/web"]
    await c.sync("default/web")
    assert client.calls == [("delete", "endpointslices", meta["name"])]


async def test_unmanaged_slices_are_left_alone_and_extra_managed_ones_go():
    mine = {"metadata": {"name": "web-x", "namespace": "default",
                         "labels": {SERVICE_NAME_LABEL: "web", MANAGED_BY_LABEL: CONTROLLER_NAME}},
            "ports": [{"name": "http", "port": 1, "protocol": "TCP"}], "endpoints": []}
    theirs = {"metadata": {"name": "web-custom", "namespace": "default", "labels": {SERVICE_NAME_LABEL: "web"}}}
    client, c, _ = controller([], slices=[mine, theirs])
    await c.sync("default/web")
    assert client.calls == [("delete", "endpointslices", "web-x")]


async def test_pod_updates_queue_the_services_selecting_old_and_new_labels():
    other = {"metadata": {"name": "db", "namespace": "default", "uid": "db-uid"},
             "spec": {"selector": {"app": "db"}, "ports": [{"port": 5432}]}}
    _, c, _ = controller(services=(SERVICE, other))
    old = {**pod("a", "10.0.0.1"), "metadata": {**pod("a", "10.0.0.1")["metadata"], "resourceVersion": "1"}}
    new = {**old, "metadata": {**old["metadata"], "resourceVersion": "2", "labels": {"app": "db"}}}
    c._update_pod(old, new)
    assert {await c.queue.get(), await c.queue.get()} == {"default/web", "default/db"}
    c._update_pod(new, new)  # a resync (same resourceVersion) queues nothing
    assert len(c.queue) == 0
