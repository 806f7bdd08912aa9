"""apiserver/protobuf.py: protobuf bodies (as kubectl's typed clients write them) -> the JSON form.

The bytes are built here from the generated.proto field numbers, the way gogo-protobuf writes them:
value (non-pointer) fields always, even when zero; pointer fields only when set.
"""
from __future__ import annotations

import base64
import random

import pytest

from apiserver import errors, protobuf


def varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # negative int32/int64: ten-byte two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def f(num: int, value) -> bytes:
    """One field: an int is a varint (bool as 0/1), str/bytes length-delimited."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(num << 3 | 2) + varint(len(data)) + data


def m(*fields: bytes) -> bytes:
    return b"".join(fields)


def entry(num: int, key: str, value) -> bytes:
    """One map<string, X> entry: a repeated message {1 key, 2 value}."""
    return f(num, f(1, key) + f(2, value))


def envelope(kind: str, api_version: str, raw: bytes) -> bytes:
    return protobuf.MAGIC + f(1, f(1, api_version) + f(2, kind)) + f(2, raw) + f(3, "") + f(4, "")


def meta(name: str = "", *extra: bytes) -> bytes:
    """ObjectMeta as kubectl writes it: the value fields 1-8 (zero creationTimestamp) always present."""
    return m(f(1, name), f(2, ""), f(3, ""), f(4, ""), f(5, ""), f(6, ""), f(7, 0), f(8, b""), *extra)


def quantity(s: str) -> bytes:
    return f(1, s)


def intstr_int(n: int) -> bytes:
    return m(f(1, 0), f(2, n), f(3, ""))


def intstr_str(s: str) -> bytes:
    return m(f(1, 1), f(2, 0), f(3, s))


def container(*extra: bytes) -> bytes:
    return m(f(1, "web"), f(2, "busybox:1.35"), f(5, ""), f(8, b""), f(13, ""), f(14, ""), f(16, 0), f(17, 0),
             f(18, 0), f(20, ""), *extra)


def pod_spec(*containers: bytes, restart: str = "") -> bytes:
    return m(*(f(2, c) for c in containers), f(3, restart), f(6, ""), f(8, ""), f(9, ""), f(10, ""), f(11, 0),
             f(12, 0), f(13, 0), f(16, ""), f(17, ""), f(19, ""), f(24, ""))


def decode(kind: str, api_version: str, raw: bytes) -> dict:
    return protobuf.decode(envelope(kind, api_version, raw))


def test_deployment_every_field_kubectl_fills():
    owner = m(f(1, "ReplicaSet"), f(3, "rs1"), f(4, "u-1"), f(5, "apps/v1"), f(6, True), f(7, False))
    md = meta("web", entry(11, "app", "web"), entry(12, "note", "x"), f(13, owner), f(14, "a/b"))
    selector = m(entry(1, "app", "web"), f(2, m(f(1, "tier"), f(2, "In"), f(3, "fe"), f(3, "be"))))
    c = container(f(3, "sh"), f(3, "-c"), f(4, "echo hi"),
                  f(6, m(f(1, "http"), f(2, 0), f(3, 80), f(4, "TCP"), f(5, ""))),
                  f(7, m(f(1, "A"), f(2, "1"))),
                  f(7, m(f(1, "B"), f(2, ""), f(3, f(3, m(f(1, f(1, "cm")), f(2, "k"), f(3, True)))))),
                  f(8, m(entry(1, "cpu", quantity("500m")), entry(2, "memory", quantity("64Mi")))))
    c = c.replace(f(14, ""), f(14, "IfNotPresent"))
    strategy = m(f(1, "RollingUpdate"), f(2, m(f(1, intstr_int(0)), f(2, intstr_str("25%")))))
    spec = m(f(1, 0), f(2, selector), f(3, m(f(1, meta("", entry(11, "app", "web"))), f(2, pod_spec(c)))),
             f(4, strategy), f(5, -5), f(6, 10), f(7, 0))
    status = m(f(1, 0), f(2, 0), f(3, 0), f(4, 0), f(5, 0), f(7, 0))
    obj = decode("Deployment", "apps/v1", m(f(1, md), f(2, spec), f(3, status)))
    assert obj["kind"] == "Deployment" and obj["apiVersion"] == "apps/v1"
    assert obj["metadata"] == {"name": "web", "labels": {"app": "web"}, "annotations": {"note": "x"},
                               "finalizers": ["a/b"],
                               "ownerReferences": [{"kind": "ReplicaSet", "name": "rs1", "uid": "u-1",
                                                    "apiVersion": "apps/v1", "controller": True,
                                                    "blockOwnerDeletion": False}]}
    s = obj["spec"]
    assert s["replicas"] == 0  # a pointer: --replicas=0 is kept
    assert s["minReadySeconds"] == -5 and s["revisionHistoryLimit"] == 10 and "paused" not in s
    assert s["selector"] == {"matchLabels": {"app": "web"},
                             "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}]}
    assert s["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}}
    assert s["template"]["metadata"] == {"labels": {"app": "web"}}
    # Go's zero values of value fields are left out, as omitempty JSON (dnsPolicy "", hostNetwork false ...)
    assert s["template"]["spec"] == {"containers": [{
        "name": "web", "image": "busybox:1.35", "command": ["sh", "-c"], "args": ["echo hi"],
        "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
        "env": [{"name": "A", "value": "1"},
                {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k", "optional": True}}}],
        "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}},
        "imagePullPolicy": "IfNotPresent"}]}
    assert obj["status"] == {}


def test_job_and_cronjob():
    job_spec = m(f(1, 2), f(2, 4), f(7, 0), f(8, 30), f(9, "Indexed"), f(10, False),
                 f(6, m(f(1, meta()), f(2, pod_spec(container(f(3, "date")), restart="Never")))))
    job = decode("Job", "batch/v1", m(f(1, meta("j1")), f(2, job_spec), f(3, m(f(4, 0), f(5, 0), f(6, 0), f(7, "")))))
    assert job["spec"]["parallelism"] == 2 and job["spec"]["completions"] == 4
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["suspend"] is False
    assert job["spec"]["ttlSecondsAfterFinished"] == 30 and job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["date"]
    cj_spec = m(f(1, "*/5 * * * *"), f(3, "Forbid"), f(6, 3), f(7, 1), f(8, "UTC"),
                f(5, m(f(1, meta("cj1")), f(2, job_spec))))
    cj = decode("CronJob", "batch/v1", m(f(1, meta("cj1")), f(2, cj_spec), f(3, b"")))
    assert cj["spec"]["schedule"] == "*/5 * * * *" and cj["spec"]["concurrencyPolicy"] == "Forbid"
    assert cj["spec"]["successfulJobsHistoryLimit"] == 3 and cj["spec"]["timeZone"] == "UTC"
    assert cj["spec"]["jobTemplate"]["metadata"] == {"name": "cj1"}
    assert cj["spec"]["jobTemplate"]["spec"]["parallelism"] == 2


def test_secret_configmap_maps():
    secret = decode("Secret", "v1", m(f(1, meta("s1")), entry(2, "bin", b"\xff\x00k"), entry(2, "t", b"y"),
                                      f(3, "Opaque"), entry(4, "plain", "text"), f(5, True)))
    assert secret["data"] == {"bin": base64.b64encode(b"\xff\x00k").decode(), "t": "eQ=="}
    assert secret["type"] == "Opaque" and secret["stringData"] == {"plain": "text"} and secret["immutable"] is True
    cm = decode("ConfigMap", "v1", m(f(1, meta("cm1")), entry(2, "a", "b"), entry(3, "blob", b"\x01\x02"),
                                     f(4, False)))
    assert cm == {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "cm1"}, "data": {"a": "b"},
                  "binaryData": {"blob": "AQI="}, "immutable": False}


def test_service_ports_and_target_port():
    port = m(f(1, "80-8080"), f(2, "TCP"), f(3, 80), f(4, intstr_int(8080)), f(5, 30080))
    named = m(f(1, "web"), f(2, "UDP"), f(3, 53), f(4, intstr_str("dns")), f(5, 0))
    bare = m(f(1, ""), f(2, "TCP"), f(3, 90), f(4, intstr_int(0)), f(5, 0))  # targetPort unset: server defaults it
    spec = m(f(1, port), f(1, named), f(1, bare), entry(2, "app", "web"), f(3, ""), f(4, "NodePort"), f(7, ""),
             f(8, ""), f(10, ""), f(11, ""), f(12, 0), f(13, 0))
    svc = decode("Service", "v1", m(f(1, meta("svc")), f(2, spec), f(3, f(1, b""))))
    assert svc["spec"] == {"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080,
                                      "nodePort": 30080},
                                     {"name": "web", "protocol": "UDP", "port": 53, "targetPort": "dns"},
                                     {"protocol": "TCP", "port": 90}],
                           "selector": {"app": "web"}, "type": "NodePort"}
    assert svc["status"] == {"loadBalancer": {}}


def test_quota_rbac_namespace_serviceaccount():
    q = decode("ResourceQuota", "v1", m(f(1, meta("q1")), f(2, m(entry(1, "pods", quantity("10")),
                                                                  entry(1, "cpu", quantity("1")),
                                                                  f(2, "BestEffort"), f(2, "NotTerminating"))),
                                        f(3, b"")))
    assert q["spec"] == {"hard": {"pods": "10", "cpu": "1"}, "scopes": ["BestEffort", "NotTerminating"]}
    rule = m(f(1, "get"), f(1, "list"), f(2, ""), f(3, "pods"), f(4, "p1"))
    role = decode("Role", "rbac.authorization.k8s.io/v1", m(f(1, meta("r1")), f(2, rule)))
    assert role["rules"] == [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"],
                              "resourceNames": ["p1"]}]
    agg = f(3, f(1, entry(1, "rbac.example.com/aggregate", "true")))
    cr = decode("ClusterRole", "rbac.authorization.k8s.io/v1", m(f(1, meta("cr1")), f(2, f(5, "/healthz")), agg))
    assert cr["rules"] == [{"nonResourceURLs": ["/healthz"]}]
    assert cr["aggregationRule"] == {"clusterRoleSelectors": [{"matchLabels": {"rbac.example.com/aggregate": "true"}}]}
    rb = decode("RoleBinding", "rbac.authorization.k8s.io/v1", m(
        f(1, meta("rb1")), f(2, m(f(1, "ServiceAccount"), f(2, ""), f(3, "sa1"), f(4, "default"))),
        f(3, m(f(1, "rbac.authorization.k8s.io"), f(2, "Role"), f(3, "r1")))))
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": "sa1", "namespace": "default"}]
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r1"}
    ns = decode("Namespace", "v1", m(f(1, meta("foo")), f(2, b""), f(3, f(1, ""))))
    assert ns == {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "foo"}, "spec": {}, "status": {}}
    sa = decode("ServiceAccount", "v1", m(f(1, meta("sa1")), f(3, f(1, "regcred")), f(4, False)))
    assert sa["imagePullSecrets"] == [{"name": "regcred"}] and sa["automountServiceAccountToken"] is False


def test_times_and_negative_ints():
    md = meta("x", f(9, m(f(1, 1_700_000_000), f(2, 5))), f(10, -1))
    obj = decode("ConfigMap", "v1", f(1, md))
    assert obj["metadata"]["deletionTimestamp"] == "2023-11-14T22:13:20Z"
    assert obj["metadata"]["deletionGracePeriodSeconds"] == -1
    assert "creationTimestamp" not in obj["metadata"]  # kubectl's zero time is dropped


@pytest.mark.parametrize("kind,api_version,raw,where", [
    ("ConfigMap", "v1", m(f(1, meta("cm1")), f(9, "x")), "field number 9"),
    ("ConfigMap", "v1", f(1, meta("cm1", f(99, 1))), "field number 99 of metadata"),
    ("Deployment", "apps/v1", f(2, f(3, f(2, pod_spec(container(f(99, b"\x08\x01")))))),
     "field number 99 of spec.template.spec.containers[0]"),
    ("Deployment", "apps/v1", f(2, f(3, f(2, pod_spec(container(), container(f(21, b""))))))  ,
     "field number 21 of spec.template.spec.containers[1]"),  # volumeDevices: not decoded by this server
    ("Job", "batch/v1", f(2, f(6, f(2, f(1, m(f(1, "v"), f(2, f(7, f(1, "nfs")))))))),
     "field number 7 of spec.template.spec.volumes[0]"),  # an NFS volume source
    ("ConfigMap", "v1", f(2, f(1, "a") + f(2, "b") + f(3, "c")), "field number 3 of data"),
    ("Service", "v1", f(2, f(1, m(f(3, 80), f(4, m(f(1, 0), f(2, 1), f(7, 1)))))), "spec.ports[0].targetPort"),
])
def test_unknown_field_is_415_never_dropped(kind, api_version, raw, where):
    """"Lose nothing": a field number the tables do not know is a 415 naming the kind and where, asking for JSON."""
    with pytest.raises(errors.StatusError) as e:
        decode(kind, api_version, raw)
    assert e.value.code == 415 and e.value.reason == "UnsupportedMediaType"
    assert kind in str(e.value) and where in str(e.value) and "JSON" in str(e.value)


def test_kind_without_a_table_is_415():
    with pytest.raises(errors.StatusError) as e:
        decode("PodDisruptionBudget", "policy/v1", f(1, meta("pdb")))
    assert e.value.code == 415 and "PodDisruptionBudget" in str(e.value) and "JSON" in str(e.value)


@pytest.mark.parametrize("body", [
    b"not protobuf",
    protobuf.MAGIC + b"\x0a\x05ab",  # truncated typeMeta
    envelope("ConfigMap", "v1", f(1, meta("x"))[:-3]),  # truncated object
    envelope("ConfigMap", "v1", varint(1 << 3 | 0) + varint(5)),  # metadata as a varint: wrong wire type
    envelope("ConfigMap", "v1", f(1, f(1, b"\xff\xfe"))),  # a name that is not UTF-8
    envelope("ConfigMap", "v1", b"\x0b"),  # wire type 3 (groups)
    envelope("", "v1", b""),  # no kind
])
def test_malformed_is_400(body):
    with pytest.raises(errors.StatusError) as e:
        protobuf.decode(body)
    assert e.value.code == 400 and e.value.reason == "BadRequest"


def test_garbage_never_raises_anything_else():
    good = envelope("Deployment", "apps/v1", m(f(1, meta("web")), f(2, m(f(1, 2), f(3, f(2, pod_spec(container())))))))
    rng = random.Random(7)
    samples = [good[:n] for n in range(len(good))]
    for _ in range(500):
        b = bytearray(good)
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(4, len(b))] = rng.randrange(256)
        samples.append(bytes(b))
    for s in samples:
        try:
            protobuf.decode(s)
        except errors.StatusError as e:
            assert e.code in (400, 415)


def test_reviews_stay_lenient():
    """The review tables hold only what their handlers read: other fields are skipped, zero values kept."""
    attrs = m(f(1, "a"), f(2, "list"), f(3, ""), f(5, "pods"), f(8, b"\x0a\x00"), f(9, b""))
    raw = m(f(1, meta("")), f(2, f(1, attrs)), f(3, b""))
    obj = protobuf.decode(envelope("SelfSubjectAccessReview", "authorization.k8s.io/v1", raw),
                          "SelfSubjectAccessReview")
    assert obj["spec"] == {"resourceAttributes": {"namespace": "a", "verb": "list", "group": "", "resource": "pods"}}


def test_pod_probes_volumes_inline_and_repeated_ints():
    """Go embedded structs (ProbeHandler in Probe, LocalObjectReference in ConfigMapVolumeSource, VolumeSource
    in Volume) are nested messages on the wire and inline in JSON; repeated int64 packed or not."""
    probe = m(f(1, f(2, m(f(1, "/healthz"), f(2, intstr_int(8080)), f(3, ""), f(4, "HTTP")))), f(2, 3), f(3, 0),
              f(4, 7), f(5, 0), f(6, 0))
    c = container(f(10, probe), f(11, m(f(1, f(3, m(f(1, intstr_str("http")), f(2, "")))), f(2, 0))),
                  f(15, m(f(1, m(f(1, "NET_ADMIN"), f(2, "ALL"))), f(4, 0), f(7, False))))
    volumes = [m(f(1, "conf"), f(2, m(f(19, m(f(1, f(1, "cm")), f(2, m(f(1, "a"), f(2, "a.txt"))), f(3, 420)))))),
               m(f(1, "tmp"), f(2, f(2, m(f(1, "Memory"), f(2, quantity("64Mi"))))))]
    spec = pod_spec(c) + b"".join(f(1, v) for v in volumes)
    psc = m(f(4, 4), f(4, 5)) + f(4, varint(6) + varint(7))  # supplementalGroups: unpacked, then packed
    pod = decode("Pod", "v1", m(f(1, meta("p")), f(2, spec + f(14, psc)), f(3, m(f(1, ""), f(3, ""), f(17, 0)))))
    got = pod["spec"]["containers"][0]
    assert got["livenessProbe"] == {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                                    "initialDelaySeconds": 3, "periodSeconds": 7}
    assert got["readinessProbe"] == {"tcpSocket": {"port": "http"}}
    assert got["securityContext"] == {"capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}, "runAsUser": 0,
                                      "allowPrivilegeEscalation": False}
    assert pod["spec"]["volumes"] == [
        {"name": "conf", "configMap": {"name": "cm", "items": [{"key": "a", "path": "a.txt"}], "defaultMode": 420}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}]
    assert pod["spec"]["securityContext"] == {"supplementalGroups": [4, 5, 6, 7]}
    assert pod["status"] == {}
