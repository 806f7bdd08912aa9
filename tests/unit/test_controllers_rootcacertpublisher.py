"""The root CA publisher keeps kube-root-ca.crt in every active namespace (fake client and listers)."""
from controllers.rootcacertpublisher import CONFIGMAP, RootCACertPublisher


class Lister:
    def __init__(self, objs):
        self.objs = objs

    def get(self, name, namespace=None):
        return self.objs.get((namespace, name))


class Client:
    def __init__(self):
        self.calls = []

    async def create(self, plural, obj, *, namespace=None):
        self.calls.append(("create", plural, namespace, obj))
        return obj

    async def patch(self, plural, name, patch, *, namespace=None):
        self.calls.append(("patch", plural, namespace, patch))
        return patch


def controller(namespaces, configmaps):
    c = RootCACertPublisher.__new__(RootCACertPublisher)
    c.client, c.root_ca = Client(), "PEM"
    c.ns_lister, c.cm_lister = Lister(namespaces), Lister(configmaps)
    return c


async def test_creates_repairs_and_skips_terminating_namespaces():
    ns = {(None, "a"): {"metadata": {"name": "a"}},
          (None, "gone"): {"metadata": {"name": "gone", "deletionTimestamp": "x"}}}
    c = controller(ns, {("b", CONFIGMAP): {"data": {"ca.crt": "old"}}})
    await c.sync("a")
    assert c.client.calls[0][0] == "create" and c.client.calls[0][3]["data"] == {"ca.crt": "PEM"}
    await c.sync("gone")
    assert len(c.client.calls) == 1
    c.ns_lister.objs[(None, "b")] = {"metadata": {"name": "b"}}
    await c.sync("b")
    assert c.client.calls[1] == ("patch", "configmaps", "b", {"data": {"ca.crt": "PEM"}})
    c.cm_lister.objs[("a", CONFIGMAP)] = {"data": {"ca.crt": "PEM"}}
    await c.sync("a")
    assert len(c.client.calls) == 2, "nothing to do when the CA is right"
