"""The real ``kubeling`` executable against a real apiserver over etcd 3.4.

One etcd and one ``python -m apiserver`` on free loopback ports serve the
module; each test runs ``.venv/bin/kubeling --kubeconfig K ...`` as a
subprocess and checks stdout, stderr and the exit code, as a user sees them.
Tests use their own object names so that they do not interfere.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import support
from kubeling.client import kubeconfig

REPO = Path(__file__).resolve().parents[2]
KUBELING = str(Path(sys.executable).parent / "kubeling")
WEB = REPO / "deploy/examples/web.yaml"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(kubeconfig path, apiserver URL) of an etcd + apiserver pair started for this module."""
    with support.control_plane(tmp_path_factory.mktemp("cli")) as cp:
        yield cp.kubeconfig, cp.server


def kubeling(cluster, *argv: str, stdin: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    kc, _ = cluster
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    return subprocess.run([KUBELING, "--kubeconfig", str(kc), *argv], input=stdin, capture_output=True,
                          text=True, timeout=timeout, env=env)


def renamed(name: str, replicas: int = 3) -> str:
    """web.yaml with its objects called ``name`` (and ``replicas`` replicas)."""
    docs = list(yaml.safe_load_all(WEB.read_text()))
    for d in docs:
        d["metadata"]["name"] = name
    docs[0]["spec"]["replicas"] = replicas
    return yaml.safe_dump_all(docs)


def test_apply_create_unchanged_configured(cluster, tmp_path):
    """apply creates, re-applies as unchanged, and patches a changed replica count."""
    f = tmp_path / "web.yaml"
    f.write_text(renamed("web-a"))
    r = kubeling(cluster, "apply", "-f", str(f))
    assert (r.returncode, r.stdout, r.stderr) == (0, "deployment.apps/web-a created\nservice/web-a created\n", "")
    r = kubeling(cluster, "apply", "-f", str(f))
    assert r.stdout == "deployment.apps/web-a unchanged\nservice/web-a unchanged\n"
    f.write_text(renamed("web-a", replicas=5))
    r = kubeling(cluster, "apply", "-f", str(f))
    assert (r.returncode, r.stdout) == (0, "deployment.apps/web-a configured\nservice/web-a unchanged\n")
    d = json.loads(kubeling(cluster, "get", "deploy", "web-a", "-o", "json").stdout)
    assert d["spec"]["replicas"] == 5
    applied = json.loads(d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert applied["spec"]["replicas"] == 5 and applied["metadata"]["namespace"] == "default"


def test_apply_from_stdin_and_removed_field_is_deleted(cluster):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-b", "labels": {"a": "1", "b": "2"}},
          "data": {"x": "1", "y": "2"}}
    assert kubeling(cluster, "apply", "-f", "-", stdin=json.dumps(cm)).stdout == "configmap/cm-b created\n"
    del cm["data"]["y"]
    del cm["metadata"]["labels"]["b"]
    assert kubeling(cluster, "apply", "-f", "-", stdin=yaml.safe_dump(cm)).stdout == "configmap/cm-b configured\n"
    live = yaml.safe_load(kubeling(cluster, "get", "cm", "cm-b", "-o", "yaml").stdout)
    assert live["data"] == {"x": "1"} and live["metadata"]["labels"] == {"a": "1"}


def test_get_tables_and_formats(cluster, tmp_path):
    f = tmp_path / "web.yaml"
    f.write_text(renamed("web-c"))
    assert kubeling(cluster, "apply", "-f", str(f)).returncode == 0
    r = kubeling(cluster, "get", "deployments", "web-c")
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert lines[1].split()[:4] == ["web-c", "0/3", "0", "0"]
    # Columns line up: each header starts where its cells start.
    assert lines[0].index("READY") == lines[1].index("0/3")

    svc = kubeling(cluster, "get", "svc", "web-c", "-o", "wide").stdout.splitlines()
    assert svc[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    cells = svc[1].split()
    assert cells[1] == "ClusterIP" and cells[2].startswith("10.") and cells[4] == "80/TCP" and cells[6] == "app=web"

    both = kubeling(cluster, "get", "deploy/web-c", "svc/web-c").stdout
    assert "deployment.apps/web-c" in both and "service/web-c" in both and "\n\n" in both

    obj = yaml.safe_load(kubeling(cluster, "get", "svc", "web-c", "-o", "yaml").stdout)
    assert obj["kind"] == "Service" and obj["spec"]["selector"] == {"app": "web"}
    listed = json.loads(kubeling(cluster, "get", "svc", "-o", "json").stdout)
    assert listed["kind"] == "List" and "web-c" in [i["metadata"]["name"] for i in listed["items"]]
    assert all(i["kind"] == "Service" for i in listed["items"])
    assert kubeling(cluster, "get", "-f", str(f), "-o", "name").stdout == "deployment.apps/web-c\nservice/web-c\n"

    ns = kubeling(cluster, "get", "svc", "-A", "--no-headers").stdout
    assert any(line.split()[:2] == ["default", "kubernetes"] for line in ns.splitlines())
    assert "NAME" not in ns
    sel = kubeling(cluster, "get", "deploy", "-l", "app=web", "-o", "name").stdout
    assert "deployment.apps/web-c" in sel.splitlines()
    assert kubeling(cluster, "get", "deploy", "-l", "app=nothing").stdout == ""
    ip = kubeling(cluster, "get", "svc", "web-c", "-o", "jsonpath={.spec.clusterIP}").stdout
    assert ip == cells[2]
    labelled = kubeling(cluster, "get", "svc", "web-c", "--show-labels").stdout.splitlines()
    assert labelled[0].split()[-1] == "LABELS" and labelled[1].split()[-1] == "app=web"


def test_empty_list_message(cluster):
    r = kubeling(cluster, "get", "pods", "-n", "kube-public")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "No resources found in kube-public namespace.\n")


def test_delete_waits_until_gone(cluster, tmp_path):
    """A pod bound to a node stays Terminating until the kubelet confirms; delete waits for that."""
    f = tmp_path / "pod.yaml"
    f.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pod-d"},
                                 "spec": {"nodeName": "no-such-node",
                                          "containers": [{"name": "c", "image": "busybox:1.35"}]}}))
    assert kubeling(cluster, "apply", "-f", str(f)).returncode == 0
    r = kubeling(cluster, "delete", "-f", str(f), "--timeout", "1s")
    assert r.returncode == 1 and r.stdout == 'pod "pod-d" deleted\n'
    assert r.stderr == "error: timed out waiting for the condition on pods/pod-d\n"
    assert "Terminating" in kubeling(cluster, "get", "pod", "pod-d").stdout
    # The stand-in for the kubelet's final delete; `delete` now returns only once it is gone.
    r = kubeling(cluster, "delete", "pod", "pod-d", "--force")
    assert r.returncode == 0 and r.stdout == 'pod "pod-d" force deleted\n'
    assert kubeling(cluster, "get", "pod", "pod-d").returncode == 1


def test_delete_manifest_objects(cluster, tmp_path):
    f = tmp_path / "web.yaml"
    f.write_text(renamed("web-e"))
    assert kubeling(cluster, "apply", "-f", str(f)).returncode == 0
    r = kubeling(cluster, "delete", "-f", str(f))
    assert (r.returncode, r.stdout) == (0, 'deployment.apps "web-e" deleted\nservice "web-e" deleted\n')
    r = kubeling(cluster, "get", "deploy", "web-e")
    assert r.returncode == 1 and r.stderr == 'Error from server (NotFound): deployments.apps "web-e" not found\n'
    r = kubeling(cluster, "delete", "-f", str(f))
    assert r.returncode == 1 and r.stderr.splitlines()[0].startswith("Error from server (NotFound): ")
    assert kubeling(cluster, "delete", "-f", str(f), "--ignore-not-found").returncode == 0


def test_describe(cluster, tmp_path):
    f = tmp_path / "web.yaml"
    f.write_text(renamed("web-f"))
    assert kubeling(cluster, "apply", "-f", str(f)).returncode == 0
    out = kubeling(cluster, "describe", "svc", "web-f").stdout
    assert out.startswith("Name:") and "Selector:                 app=web" in out and "TargetPort:" in out
    out = kubeling(cluster, "describe", "deployment", "web-f").stdout
    assert "Replicas:               3 desired" in out and "last-applied" not in out and "Events:" in out
    r = kubeling(cluster, "describe", "pod", "zzz-none")
    assert r.returncode == 1 and r.stderr == 'Error from server (NotFound): pods "zzz-none" not found\n'


def test_watch_prints_new_rows_and_ctrl_c_exits_130(cluster):
    kc, _ = cluster
    proc = subprocess.Popen([KUBELING, "--kubeconfig", str(kc), "get", "configmaps", "-w", "-n", "kube-public"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "watched", "namespace": "kube-public"}}
        assert kubeling(cluster, "apply", "-f", "-", stdin=json.dumps(cm)).returncode == 0
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert any(line.split()[:2] == ["watched", "0"] for line in out.splitlines()), out


@pytest.mark.parametrize("argv, stdin, line", [
    pytest.param(["apply", "-f", "-"], "kind: Service\napiVersion: v1\nmetadata:\n  name: x\n  labels: a: b\n",
                 "error: error parsing STDIN: error converting YAML to JSON: yaml: line 5: ", id="bad-yaml"),
    pytest.param(["apply", "-f", "-"], "apiVersion: v1\nmetadata:\n  name: x\n",
                 'error: error validating "STDIN": error validating data: kind not set', id="no-kind"),
    pytest.param(["get", "pods", "missing-pod"], None, 'Error from server (NotFound): pods "missing-pod" not found',
                 id="not-found"),
    pytest.param(["get", "foo"], None, 'error: the server doesn\'t have a resource type "foo"', id="unknown-kind"),
    pytest.param(["apply", "-f", "-"], "apiVersion: v9\nkind: Gizmo\nmetadata:\n  name: g\n",
                 'error: resource mapping not found for name: "g"', id="unknown-manifest-kind"),
])
def test_errors_are_one_line_exit_1(cluster, argv, stdin, line):
    r = kubeling(cluster, *argv, stdin=stdin)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(line), r.stderr


def test_unreachable_server(tmp_path):
    port = support.free_port()
    kc = tmp_path / "kc"
    kubeconfig.write(kc, server=f"http://127.0.0.1:{port}", user="test")
    r = kubeling((kc, ""), "apply", "-f", str(WEB))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == (f"The connection to the server 127.0.0.1:{port} was refused - did you specify the right "
                        "host or port?\n")


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed")
def test_kubectl_sees_kubeling_apply_as_unchanged(cluster, tmp_path):
    """kubeling writes last-applied exactly as kubectl does, so the two can take turns."""
    kc, _ = cluster
    f = tmp_path / "web.yaml"
    f.write_text(renamed("web-g"))
    assert kubeling(cluster, "apply", "-f", str(f)).returncode == 0
    r = subprocess.run(["kubectl", "--kubeconfig", str(kc), "apply", "--validate=false", "-f", str(f)],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout == "deployment.apps/web-g unchanged\nservice/web-g unchanged\n", r.stderr


class _FakeKubeletLogs:
    """A stand-in for the kubelet's /containerLogs endpoint (no kubelet runs in this module):
    records each request and answers two lines of text."""

    def __init__(self):
        import http.server
        import threading

        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                body = b"line one\nline two\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def test_logs_through_the_apiserver(cluster):
    """``logs`` asks pods/NAME/log with kubectl's parameters; ``deploy/NAME`` picks one of its pods."""
    import asyncio
    from kubeling.client import Client

    kc, _ = cluster
    fake = _FakeKubeletLogs()

    async def setup():
        async with Client.from_kubeconfig(kc) as c:
            node = await c.create("nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "logs-node"}})
            node["status"] = {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                              "daemonEndpoints": {"kubeletEndpoint": {"Port": fake.port}}}
            await c.replace_status("nodes", node)
            for i in range(2):
                await c.create("pods", {"apiVersion": "v1", "kind": "Pod",
                                        "metadata": {"name": f"lg-{i}", "labels": {"app": "lg"}},
                                        "spec": {"nodeName": "logs-node", "containers": [
                                            {"name": "main", "image": "busybox:1.35"},
                                            {"name": "side", "image": "busybox:1.35"}]}}, namespace="default")
            deploy = list(yaml.safe_load_all(renamed("lg")))[0]
            deploy["spec"]["selector"] = {"matchLabels": {"app": "lg"}}
            deploy["spec"]["template"]["metadata"]["labels"] = {"app": "lg"}
            await c.create("deployments", deploy, namespace="default")

    try:
        asyncio.run(setup())
        r = kubeling(cluster, "logs", "lg-0", "-c", "side", "--tail", "5", "--timestamps")
        assert (r.returncode, r.stdout, r.stderr) == (0, "line one\nline two\n", "")
        assert fake.requests[-1].startswith("/containerLogs/default/lg-0/side?")
        assert "tailLines=5" in fake.requests[-1] and "timestamps=true" in fake.requests[-1]
        r = kubeling(cluster, "logs", "deploy/lg")
        assert r.returncode == 0 and r.stdout == "line one\nline two\n"
        assert r.stderr.splitlines()[0].startswith("Found 2 pods, using pod/lg-")
        assert r.stderr.splitlines()[1] == 'Defaulted container "main" out of: main, side'
        r = kubeling(cluster, "logs", "lg-1", "-c", "nope")
        assert r.returncode == 1 and r.stderr == "error: container nope is not valid for pod lg-1\n"
    finally:
        fake.close()
