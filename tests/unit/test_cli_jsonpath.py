"""-o jsonpath: the template subset scripts use."""
import pytest

from kubeling.cli.errors import CLIError
from kubeling.cli.jsonpath import evaluate

LIST = {"kind": "List", "items": [
    {"metadata": {"name": "a", "labels": {"app": "web"}}, "spec": {"ports": [{"port": 80}, {"port": 443}]}},
    {"metadata": {"name": "b"}, "status": {"ready": True}},
]}


@pytest.mark.parametrize("template, text", [
    ("{.items[*].metadata.name}", "a b"),
    ("{.items[0].metadata.labels.app}", "web"),
    ("{$.items[-1].metadata.name}", "b"),
    ("{.items[0].spec.ports[*].port}", "80 443"),
    ("{.items[1].status.ready}", "true"),
    ("{.items[0].metadata.labels}", '{"app":"web"}'),
    ("name={.items[0].metadata.name}{\"\\n\"}", "name=a\n"),
    ("{.items[0].metadata['name']}", "a"),
    ("{.missing.field}", ""),
    ("plain text", "plain text"),
])
def test_templates(template, text):
    assert evaluate(template, LIST) == text


@pytest.mark.parametrize("template", ["{range .items[*]}{.x}{end}", "{.items[?(@.a)]}", "{.items[}"])
def test_unsupported_templates_are_errors(template):
    with pytest.raises(CLIError, match="error parsing jsonpath"):
        evaluate(template, LIST)
