"""Bad input against a real apiserver (issue 4): every error is a 4xx Status, never a 5xx or a traceback.

Huge bodies (413, refused while streaming), malformed JSON / YAML (400),
objects of the wrong group/version or kind for the URL (400 as upstream),
bad names (422 with the field path), bad log options (422), and a bounded
hypothesis fuzz pass POSTing pod / service / deployment shaped objects
with random values at random paths.
"""
from __future__ import annotations

import json
import uuid

import httpx
import pytest

import support

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

LIMIT = 3 * 1024 * 1024


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """An httpx client on a fresh apiserver (over etcd 3.4) and a namespace for the module."""
    with support.control_plane(tmp_path_factory.mktemp("badinput")) as cp:
        with httpx.Client(base_url=cp.server, timeout=15.0, trust_env=False) as c:
            ns = "bad-" + uuid.uuid4().hex[:6]
            r = c.post("/api/v1/namespaces", json={"metadata": {"name": ns}})
            assert r.status_code == 201, r.text
            c.ns = ns
            yield c


def assert_status(r: httpx.Response, code: int, reason: str) -> dict:
    """The response is a Status with ``code`` and ``reason``; returns it."""
    assert r.status_code == code, r.text[:500]
    body = r.json()
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure", body
    assert body["code"] == code and body["reason"] == reason, body
    return body


def test_body_over_3mib_is_413(api):
    big = b'{"metadata":{"name":"big"},"data":{"k":"' + b"x" * (LIMIT + 10) + b'"}}'
    r = api.post(f"/api/v1/namespaces/{api.ns}/configmaps", content=big,
                 headers={"Content-Type": "application/json"})
    body = assert_status(r, 413, "RequestEntityTooLarge")
    assert body["message"] == f"Request entity too large: limit is {LIMIT}"


def test_chunked_body_over_3mib_is_413_without_content_length(api):
    sent = []

    def chunks():
        for _ in range(64):  # 64 x 64 KiB = 4 MiB; the server stops reading after 3 MiB
            sent.append(1)
            yield b" " * 65536
    try:
        r = api.put(f"/api/v1/namespaces/{api.ns}/configmaps/big", content=chunks(),
                    headers={"Content-Type": "application/json"})
    except httpx.HTTPError:
        pytest.fail("the server should answer 413, not drop the connection")
    assert_status(r, 413, "RequestEntityTooLarge")


def test_body_just_under_limit_is_read(api):
    # 2.5 MiB of whitespace around a valid object: read and accepted (then refused by validation size rules or created)
    obj = json.dumps({"metadata": {"name": "under"}, "data": {"k": "v"}}).encode()
    r = api.post(f"/api/v1/namespaces/{api.ns}/configmaps", content=obj + b" " * (LIMIT - len(obj) - 100),
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text[:300]


@pytest.mark.parametrize("payload", [b"{not json", b'{"metadata": ', b"\xff\xfe\x00", b"[1, 2", b'"str'])
def test_malformed_json_is_400(api, payload):
    r = api.post(f"/api/v1/namespaces/{api.ns}/configmaps", content=payload,
                 headers={"Content-Type": "application/json"})
    assert_status(r, 400, "BadRequest")


def test_yaml_body_and_malformed_yaml(api):
    ok = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: '1'\n"
    r = api.post(f"/api/v1/namespaces/{api.ns}/configmaps", content=ok, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    assert r.json()["data"] == {"a": "1"}
    bad = b"metadata:\n  name: [unclosed\n  data: : :\n"
    r = api.post(f"/api/v1/namespaces/{api.ns}/configmaps", content=bad, headers={"Content-Type": "application/yaml"})
    assert_status(r, 400, "BadRequest")


@pytest.mark.parametrize("content_type", ["application/cbor", "text/plain"])
def test_undecodable_body_media_type_is_415(api, content_type):
    """A body we cannot decode is a 415 naming what we take, as upstream's NegotiateInputSerializer;
    nothing is created (protobuf is decoded: tests/integration/test_kubectl_create.py)."""
    body = b"k8s\x00\n\x0f\n\x02v1\x12\tConfigMap"
    for method, path in (("POST", f"/api/v1/namespaces/{api.ns}/configmaps"),
                         ("PUT", f"/api/v1/namespaces/{api.ns}/configmaps/pb")):
        r = api.request(method, path, content=body, headers={"Content-Type": content_type})
        st = assert_status(r, 415, "UnsupportedMediaType")
        assert st["message"] == ("the body of the request was in an unknown format - accepted media types "
                                 "include: application/json, application/yaml")
    assert api.get(f"/api/v1/namespaces/{api.ns}/configmaps/pb").status_code == 404


def test_non_object_bodies_are_4xx(api):
    for payload in (b"[]", b"42", b'"x"', b"null", b"true"):
        r = api.post(f"/api/v1/namespaces/{api.ns}/configmaps", content=payload,
                     headers={"Content-Type": "application/json"})
        assert 400 <= r.status_code < 500, (payload, r.status_code, r.text)
        assert r.json()["kind"] == "Status"


def test_wrong_group_version_for_url_is_400(api):
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "wrong"},
           "spec": {"selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "b"}},
                                 "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    r = api.post(f"/api/v1/namespaces/{api.ns}/pods", json=dep)
    body = assert_status(r, 400, "BadRequest")
    assert body["message"] == "the API version in the data (apps/v1) does not match the expected API version (v1)"


def test_wrong_kind_for_url_is_400(api):
    r = api.post(f"/api/v1/namespaces/{api.ns}/pods",
                 json={"apiVersion": "v1", "kind": "Service", "metadata": {"name": "wrong"}})
    assert_status(r, 400, "BadRequest")


@pytest.mark.parametrize("name", ["Bad_Name", "UPPER", "-lead", "a" * 254, "dots..dots"])
def test_bad_names_are_422_with_field(api, name):
    r = api.post(f"/api/v1/namespaces/{api.ns}/configmaps", json={"metadata": {"name": name}})
    body = assert_status(r, 422, "Invalid")
    assert any(c["field"] == "metadata.name" for c in body["details"]["causes"]), body


def test_bad_pod_name_label_namespace(api):
    r = api.post("/api/v1/namespaces", json={"metadata": {"name": "Not.A.Label"}})
    body = assert_status(r, 422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "metadata.name"


@pytest.mark.parametrize("query,field", [("tailLines=-1", "tailLines"), ("sinceSeconds=0", "sinceSeconds"),
                                         ("limitBytes=0", "limitBytes")])
def test_bad_log_options_are_422(api, query, field):
    r = api.get(f"/api/v1/namespaces/{api.ns}/pods/nopod/log?{query}")
    body = assert_status(r, 422, "Invalid")
    assert body["details"]["kind"] == "PodLogOptions"
    assert body["details"]["causes"][0]["field"] == field


def test_since_time_and_seconds_together_are_422(api):
    r = api.get(f"/api/v1/namespaces/{api.ns}/pods/nopod/log",
                params={"sinceSeconds": "10", "sinceTime": "2026-01-01T00:00:00Z"})
    assert_status(r, 422, "Invalid")
    r = api.get(f"/api/v1/namespaces/{api.ns}/pods/nopod/log", params={"tailLines": "x"})
    assert_status(r, 400, "BadRequest")


# ---- fuzz -------------------------------------------------------------------------

BASES = {
    "pods": ("v1", "Pod", {"spec": {"containers": [{"name": "c", "image": "busybox:1.35",
                                                    "ports": [{"containerPort": 80}],
                                                    "resources": {"limits": {"cpu": "100m"}}}]}}),
    "services": ("v1", "Service", {"spec": {"selector": {"app": "x"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
    "deployments": ("apps/v1", "Deployment", {"spec": {
        "replicas": 1, "selector": {"matchLabels": {"app": "x"}},
        "template": {"metadata": {"labels": {"app": "x"}},
                     "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}}}}),
}
KEYS = ["metadata", "name", "labels", "spec", "containers", "image", "ports", "port", "containerPort",
        "replicas", "selector", "matchLabels", "template", "resources", "limits", "cpu", "memory",
        "type", "clusterIP", "protocol", "env", "value", "apiVersion", "kind", "annotations", "x", ""]

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=False), st.text(max_size=20), st.sampled_from(["100m", "1Gi", "-1", "x/y"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)), max_leaves=8)


def _set_path(obj, path: list, value):
    """Put ``value`` at ``path`` (keys for dicts, indices for lists), replacing whatever is in the way."""
    cur = obj
    for i, key in enumerate(path):
        last = i == len(path) - 1
        if isinstance(cur, list):
            if not cur:
                cur.append({})
            idx = key % len(cur) if isinstance(key, int) else 0
            if last:
                cur[idx] = value
                return
            if not isinstance(cur[idx], (dict, list)):
                cur[idx] = {}
            cur = cur[idx]
        else:
            k = key if isinstance(key, str) else str(key)
            if last:
                cur[k] = value
                return
            if not isinstance(cur.get(k), (dict, list)):
                cur[k] = {}
            cur = cur[k]


mutations = st.lists(st.tuples(st.lists(st.one_of(st.sampled_from(KEYS), st.integers(0, 3)), min_size=1, max_size=5),
                               values), min_size=1, max_size=4)


@settings(max_examples=200, deadline=5000, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(resource=st.sampled_from(sorted(BASES)), muts=mutations,
       validation=st.sampled_from([None, "Strict", "Warn", "Ignore"]), verb=st.sampled_from(["POST", "PUT"]))
def test_fuzz_random_objects_never_5xx(api, resource, muts, validation, verb):
    api_version, kind, base = BASES[resource]
    obj = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "fz-" + uuid.uuid4().hex[:8]},
           **json.loads(json.dumps(base))}
    for path, value in muts:
        _set_path(obj, path, value)
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    url = f"{prefix}/namespaces/{api.ns}/{resource}"
    name = (obj.get("metadata") or {}).get("name") if isinstance(obj.get("metadata"), dict) else None
    if verb == "PUT":
        url += f"/{name if isinstance(name, str) and name else 'fz-put'}"
    params = {"fieldValidation": validation} if validation else {}
    r = api.request(verb, url, content=json.dumps(obj).encode(), params=params,
                    headers={"Content-Type": "application/json"})
    assert r.status_code < 500, (r.status_code, r.text[:500], obj)
    if r.status_code >= 400:
        body = r.json()
        assert body.get("kind") == "Status" and body.get("code") == r.status_code, body
        assert isinstance(body.get("message"), str) and body["message"], body


# ---- metrics.k8s.io (no kubelet here: shapes, discovery and errors) ------------------


def test_metrics_api_discovery_and_errors(api):
    groups = api.get("/apis").json()["groups"]
    assert any(g["name"] == "metrics.k8s.io" and g["preferredVersion"]["version"] == "v1beta1" for g in groups)
    rl = api.get("/apis/metrics.k8s.io/v1beta1").json()
    kinds = {r["name"]: (r["kind"], r["namespaced"], r["verbs"]) for r in rl["resources"]}
    assert kinds == {"nodes": ("NodeMetrics", False, ["get", "list"]), "pods": ("PodMetrics", True, ["get", "list"])}
    agg = api.get("/apis", headers={"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"})
    assert any(i["metadata"]["name"] == "metrics.k8s.io" for i in agg.json()["items"])
    r = api.get("/apis/metrics.k8s.io/v1beta1/nodes")
    assert r.status_code == 200 and r.json()["kind"] == "NodeMetricsList" and r.json()["items"] == []
    r = api.get(f"/apis/metrics.k8s.io/v1beta1/namespaces/{api.ns}/pods")
    assert r.status_code == 200 and r.json()["kind"] == "PodMetricsList"
    assert api.get("/apis/metrics.k8s.io/v1beta1/pods").json()["kind"] == "PodMetricsList"
    body = assert_status(api.get(f"/apis/metrics.k8s.io/v1beta1/namespaces/{api.ns}/pods/nope"), 404, "NotFound")
    assert body["message"] == 'pods.metrics.k8s.io "nope" not found'
    body = assert_status(api.get("/apis/metrics.k8s.io/v1beta1/nodes/nope"), 404, "NotFound")
    assert body["message"] == 'nodes.metrics.k8s.io "nope" not found'
    assert body["details"]["group"] == "metrics.k8s.io"
    assert_status(api.post("/apis/metrics.k8s.io/v1beta1/nodes", json={}), 405, "MethodNotAllowed")
    assert_status(api.get("/apis/metrics.k8s.io/v1beta1/namespaces/x/nodes"), 404, "NotFound")
    r = api.get("/apis/metrics.k8s.io/v1beta1/nodes", params={"labelSelector": "a in (b"})
    assert r.status_code == 400 and r.json()["kind"] == "Status"


def test_unserved_path_404_has_empty_details(api):
    """As upstream's responsewriters.NotFound: kubectl debug tells a missing subresource (details
    without a name) from a missing pod by it, and crashed on a 404 without details."""
    r = api.patch("/api/v1/namespaces/default/pods/x/nosuchsubresource", content=b"{}",
                  headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert assert_status(r, 404, "NotFound")["details"] == {}
