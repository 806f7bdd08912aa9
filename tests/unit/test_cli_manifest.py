"""Manifest loading for -f: files, directories, stdin, YAML and JSON, and its errors."""
import io
import json

import pytest

from kubeling.cli import manifest
from kubeling.cli.errors import CLIError

DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
"""
SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
"""


def test_multi_document_yaml_skips_empty_documents(tmp_path):
    f = tmp_path / "web.yaml"
    f.write_text("---\n" + DEPLOY + "---\n---\n" + SERVICE + "...\n")
    got = manifest.load([str(f)])
    assert [(m.obj["kind"], m.source) for m in got] == [("Deployment", str(f)), ("Service", str(f))]


def test_list_kinds_are_expanded():
    doc = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}},
        {"apiVersion": "v1", "kind": "PodList", "items": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}]},
    ]}
    objs = manifest.parse_documents(json.dumps(doc), "x.json")
    assert [o["metadata"]["name"] for o in objs] == ["a", "p"]


def test_directory_takes_manifest_extensions_sorted(tmp_path):
    (tmp_path / "b.yml").write_text(SERVICE)
    (tmp_path / "a.json").write_text(json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}))
    (tmp_path / "notes.txt").write_text("not a manifest")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.yaml").write_text(DEPLOY)
    assert [m.obj["kind"] for m in manifest.load([str(tmp_path)])] == ["ConfigMap", "Service"]
    assert [m.obj["kind"] for m in manifest.load([str(tmp_path)], recursive=True)] == \
        ["ConfigMap", "Service", "Deployment"]


def test_stdin():
    got = manifest.load(["-"], stdin=io.StringIO(DEPLOY))
    assert got[0].source == "STDIN" and got[0].obj["metadata"]["name"] == "web"


@pytest.mark.parametrize("text, expected", [
    pytest.param("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  labels: a: b\n",
                 "error parsing web.yaml: error converting YAML to JSON: yaml: line 5: ", id="mapping-values"),
    pytest.param("apiVersion: v1\nkind: [Service\n", "error parsing web.yaml: error converting YAML to JSON: yaml: line ",
                 id="unclosed-flow"),
])
def test_bad_yaml_names_file_and_line(text, expected):
    with pytest.raises(CLIError) as e:
        manifest.parse_documents(text, "web.yaml")
    assert str(e.value).startswith(expected)
    assert "\n" not in e.value.line and e.value.line.startswith("error: error parsing web.yaml")


@pytest.mark.parametrize("text, what", [
    pytest.param("apiVersion: v1\nmetadata:\n  name: x\n", "kind not set", id="no-kind"),
    pytest.param("kind: Pod\nmetadata:\n  name: x\n", "apiVersion not set", id="no-apiVersion"),
    pytest.param("metadata:\n  name: x\n", "[apiVersion not set, kind not set]", id="neither"),
])
def test_missing_type_fields_are_validation_errors(text, what):
    with pytest.raises(CLIError) as e:
        manifest.parse_documents(text, "x.yaml")
    assert str(e.value) == (f'error validating "x.yaml": error validating data: {what}; if you choose to '
                            "ignore these errors, turn validation off with --validate=false")


def test_scalar_document_is_rejected():
    with pytest.raises(CLIError, match="error parsing x.yaml"):
        manifest.parse_documents("just a string\n", "x.yaml")


def test_missing_path_and_empty_input(tmp_path):
    with pytest.raises(CLIError, match='the path "nope.yaml" does not exist'):
        manifest.load(["nope.yaml"])
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    with pytest.raises(CLIError, match="no objects passed to apply"):
        manifest.load([str(empty)])


def test_example_manifest_is_a_deployment_and_a_service():
    """deploy/examples/web.yaml is what the walking skeleton applies."""
    from kubeling.config import REPO_ROOT
    objs = [m.obj for m in manifest.load([str(REPO_ROOT / "deploy/examples/web.yaml")])]
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == [("Deployment", "web"), ("Service", "web")]
    deploy, svc = objs
    assert deploy["spec"]["replicas"] == 3
    c = deploy["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "busybox:1.35" and c["ports"][0] == {"name": "http", "containerPort": 8080}
    assert svc["spec"]["selector"] == {"app": "web"}
    assert svc["spec"]["ports"][0]["port"] == 80 and svc["spec"]["ports"][0]["targetPort"] == 8080
