"""describe pages: layout as kubectl prints it, and resource quantities."""
import asyncio

import pytest

from kubeling.cli import describers
from kubeling.api.quantity import canonical_quantity, format_quantity, parse_or_zero as parse_quantity
from kubeling.client import ApiError


class NoEvents:
    """Stands in for the Client: no events, nothing else found."""

    async def list(self, resource, **kwargs):
        return {"items": []}

    async def get(self, resource, name, **kwargs):
        raise ApiError(404, {"reason": "NotFound", "message": f'{resource} "{name}" not found'})


POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web", "pod-template-hash": "5d"},
                 "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"},
                 "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d", "controller": True}]},
    "spec": {"nodeName": "node1", "containers": [
        {"name": "web", "image": "busybox:1.35", "command": ["sh", "-c", "httpd -f"],
         "ports": [{"containerPort": 8080, "protocol": "TCP"}],
         "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
    "status": {"phase": "Running", "hostIP": "127.0.0.1", "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}],
               "conditions": [{"type": "Ready", "status": "True"}],
               "containerStatuses": [{"name": "web", "ready": True, "restartCount": 0, "containerID": "docker://abc",
                                      "imageID": "busybox", "state": {"running": {}}}]},
}


def test_pod_page():
    text = asyncio.run(describers.describe_pod(NoEvents(), POD, 0))
    lines = text.splitlines()
    assert lines[:4] == ["Name:         web-1", "Namespace:    default", "Node:         node1/127.0.0.1",
                         "Labels:       app=web"]
    assert lines[4] == "              pod-template-hash=5d"
    assert "Annotations:  <none>" in lines  # last-applied is never shown
    assert "Controlled By:  ReplicaSet/web-5d" in lines
    assert "IPs:" in lines and "  IP:           10.244.0.5" in lines
    assert "    Port:          8080/TCP" in lines and "      cpu:        10m" in lines
    assert "  Ready          True " in lines
    assert lines[-2:] == ["Tolerations:     <none>", "Events:          <none>"]


def test_template_containers_are_indented_like_kubectl():
    w = describers.PrefixWriter()
    describers.write_template(w, {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "busybox:1.35"}]}})
    assert w.text().splitlines()[:5] == ["Pod Template:", "  Labels:  app=web", "  Containers:", "   web:",
                                         "    Image:         busybox:1.35"]


def test_qos_class():
    assert describers.qos_class({"spec": {"containers": [{}]}}) == "BestEffort"
    limits = {"cpu": "1", "memory": "1Gi"}
    assert describers.qos_class({"spec": {"containers": [{"resources": {"limits": limits}}]}}) == "Guaranteed"
    assert describers.qos_class(POD) == "Burstable"


@pytest.mark.parametrize("text, value", [("10m", 0.01), ("2", 2), ("16Mi", 16 * 2 ** 20), ("1G", 1e9), ("x", 0)])
def test_parse_quantity(text, value):
    assert parse_quantity(text) == pytest.approx(value)


def test_format_and_canonical_quantity():
    assert format_quantity(0.03, "cpu") == "30m" and format_quantity(2, "cpu") == "2"
    assert format_quantity(48 * 2 ** 20, "memory") == "48Mi" and format_quantity(0, "memory") == "0"
    assert canonical_quantity("4028416Ki") == "3934Mi" and canonical_quantity("1G") == "1G"
