"""The StatefulSet controller's member identity."""
from controllers import statefulset as ssc


def _sts():
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web", "namespace": "ns", "uid": "u"},
            "spec": {"serviceName": "web", "template": {"metadata": {"labels": {"app": "web"}},
                                                        "spec": {"containers": [{"name": "c", "image": "i"}]}}}}


def test_member_identity():
    rev = ssc.revision_of(_sts())
    assert rev.startswith("web-")
    pod = ssc.pod_for_ordinal(_sts(), 4, rev)
    assert pod["metadata"]["name"] == "web-4" and pod["spec"]["hostname"] == "web-4"
    assert pod["spec"]["subdomain"] == "web"
    assert pod["metadata"]["labels"] == {"app": "web", ssc.POD_NAME_LABEL: "web-4", ssc.POD_INDEX_LABEL: "4",
                                         ssc.REVISION_LABEL: rev}
    assert ssc.ordinal_of("web", pod) == 4
    assert ssc.ordinal_of("web", {"metadata": {"name": "web-x"}}) is None
    assert ssc.ordinal_of("web", {"metadata": {"name": "webby-1"}}) is None
