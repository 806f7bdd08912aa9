"""Admission plugins of the apiserver, one at a time."""
import asyncio

from apiserver.admission import Attributes
from apiserver.admission.defaulttolerationseconds import DefaultTolerationSeconds


class _Info:
    resource = "pods"


def _admit(plugin, obj, *, op="create", subresource=None, info=_Info()):
    asyncio.run(plugin.admit(Attributes(op, info, "ns", "p", subresource, "u"), obj, None))
    return obj


def test_default_tolerations_added_once():
    pod = {"spec": {"containers": [{"name": "c", "image": "i"}]}}
    _admit(DefaultTolerationSeconds(not_ready_seconds=300, unreachable_seconds=7), pod)
    assert pod["spec"]["tolerations"] == [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 7}]


def test_own_tolerations_are_kept():
    own = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
           "tolerationSeconds": 5}
    pod = _admit(DefaultTolerationSeconds(), {"spec": {"tolerations": [own]}})
    assert [t["key"] for t in pod["spec"]["tolerations"]] == ["node.kubernetes.io/unreachable",
                                                             "node.kubernetes.io/not-ready"]
    assert pod["spec"]["tolerations"][0]["tolerationSeconds"] == 5
    everything = {"operator": "Exists"}
    pod = _admit(DefaultTolerationSeconds(), {"spec": {"tolerations": [everything]}})
    assert pod["spec"]["tolerations"] == [everything]


def test_only_pod_creates():
    pod = {"spec": {}}
    _admit(DefaultTolerationSeconds(), pod, op="update")
    _admit(DefaultTolerationSeconds(), pod, subresource="status")

    class Other:
        resource = "deployments"
    _admit(DefaultTolerationSeconds(), pod, info=Other())
    assert pod == {"spec": {}}
