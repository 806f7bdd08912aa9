"""Command-line parsing and the one-line errors, without a server."""
import io

import pytest

from support import free_port
from kubeling.cli import main
from kubeling.cli.errors import CLIError
from kubeling.cli.get import Request, parse_args
from kubeling.api import resources as res
from kubeling.client import kubeconfig


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    code = main.run(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_flags_anywhere_and_words_after_flags_are_arguments():
    a = main.parse(["-n", "kube-system", "get", "pods", "-o", "wide", "web", "--kubeconfig", "k"])
    assert a.command == "get" and a.args == ["pods", "web"] and a.namespace == "kube-system"
    assert a.output == "wide" and a.kubeconfig == "k"
    a = main.parse(["delete", "deploy", "web", "--wait=false", "--timeout", "5s"])
    assert a.wait == "false" and a.timeout == "5s" and a.args == ["deploy", "web"]


def test_get_argument_forms():
    pods, svc, deploy = res.for_name("pods"), res.for_name("svc"), res.for_name("deploy")
    assert parse_args(["po", "a", "b"]) == [Request(pods, ("a", "b"))]
    assert parse_args(["pods,svc"]) == [Request(pods, ()), Request(svc, ())]
    assert parse_args(["pod/a", "pod/b", "deploy/web"]) == [Request(pods, ("a", "b")), Request(deploy, ("web",))]
    assert parse_args(["deployments.apps"]) == [Request(deploy, ())]
    assert [r.resource.plural for r in parse_args(["all"])] == ["pods", "services", "deployments", "replicasets"]
    with pytest.raises(CLIError, match="no need to specify a resource type"):
        parse_args(["pods", "pod/a"])


@pytest.mark.parametrize("argv, line", [
    (["get"], 'error: You must specify the type of resource to get. Use "kubeling api-resources" for a complete '
              "list of supported resources."),
    (["get", "foo"], 'error: the server doesn\'t have a resource type "foo"'),
    (["frobnicate"], 'error: unknown command "frobnicate" for "kubeling"'),
    (["get", "pods", "--bogus"], "error: unknown flag: --bogus"),
    (["delete", "pods"], "error: resource(s) were provided, but no name was specified"),
    (["delete", "pod", "x", "--timeout", "soon"], 'error: invalid argument "soon" for "--timeout" flag: time: '
                                                  'invalid duration "soon"'),
])
def test_usage_errors_are_one_line_exit_1(argv, line, tmp_path):
    kc = tmp_path / "kc"
    kubeconfig.write(kc, server=f"http://127.0.0.1:{free_port()}", user="test")
    code, out, err = run(argv + ["--kubeconfig", str(kc)])
    assert code == 1 and out == ""
    assert err == line + "\n"


def test_unreachable_server(tmp_path):
    port = free_port()
    kc = tmp_path / "kc"
    kubeconfig.write(kc, server=f"http://127.0.0.1:{port}", user="test")
    code, out, err = run(["get", "pods", "--kubeconfig", str(kc)])
    assert code == 1
    assert err == (f"The connection to the server 127.0.0.1:{port} was refused - did you specify the right "
                   "host or port?\n")


def test_missing_kubeconfig_says_make_up(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBELING_HOME", str(tmp_path))
    code, _, err = run(["get", "pods"])
    assert code == 1 and err.count("\n") == 1 and "make up" in err
    assert str(tmp_path / "admin.kubeconfig") in err


def test_kubeconfig_env_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "from-env"))
    code, _, err = run(["get", "pods"])
    assert code == 1 and "from-env" in err


def test_bad_yaml_fails_before_any_request(tmp_path):
    bad = tmp_path / "web.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  labels: a: b\n")
    code, out, err = run(["apply", "-f", str(bad), "--kubeconfig", str(tmp_path / "missing")])
    assert code == 1 and out == ""
    assert err.startswith(f"error: error parsing {bad}: error converting YAML to JSON: yaml: line 5: ")


def test_unknown_kind_in_manifest(tmp_path):
    f = tmp_path / "w.yaml"
    f.write_text("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n")
    code, _, err = run(["apply", "-f", str(f), "--kubeconfig", str(tmp_path / "missing")])
    assert code == 1
    assert err == (f'error: resource mapping not found for name: "w" namespace: "" from "{f}": '
                   'no matches for kind "Widget" in version "example.com/v1"\n')


def test_namespace_mismatch(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: a\n")
    code, _, err = run(["apply", "-f", str(f), "-n", "b", "--kubeconfig", str(tmp_path / "missing")])
    assert code == 1 and 'the namespace from the provided object "a" does not match the namespace "b"' in err


def test_version_client_only_and_api_resources():
    code, out, _ = run(["version", "--client"])
    assert code == 0 and out.startswith("Client Version: v")
    code, out, _ = run(["api-resources"])
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert any(line.split() == ["deployments", "deploy", "apps/v1", "true", "Deployment"] for line in lines)


def test_context_namespace_is_the_default(tmp_path):
    import yaml
    from kubeling.cli.factory import Factory
    kc = tmp_path / "kc"
    kubeconfig.write(kc, server="http://127.0.0.1:1", user="test")
    doc = yaml.safe_load(kc.read_text())
    doc["contexts"][0]["context"]["namespace"] = "team-a"
    kc.write_text(yaml.safe_dump(doc))
    assert Factory(kubeconfig_flag=str(kc)).effective_namespace == "team-a"
    assert Factory(kubeconfig_flag=str(kc), namespace="b").effective_namespace == "b"
    assert Factory(kubeconfig_flag=str(tmp_path / "none")).effective_namespace == "default"


def test_delete_flag_values():
    from kubeling.cli.delete import parse_bool, parse_duration, propagation_policy
    assert [parse_duration(t) for t in ("60s", "2m", "1m30s", "500ms", "30", "1h")] == [60, 120, 90, 0.5, 30, 3600]
    assert parse_bool("false", "wait") is False and parse_bool("True", "wait") is True
    with pytest.raises(CLIError):
        parse_bool("maybe", "wait")
    assert [propagation_policy(c) for c in ("background", "foreground", "orphan", "false")] == \
        ["Background", "Foreground", "Orphan", "Orphan"]
