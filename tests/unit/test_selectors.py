"""Label and field selectors: the syntax of apimachinery's labels.Parse and fields.ParseSelector."""
import pytest

from kubeling.api.selectors import (label_selector_from_object, parse_field_selector, parse_label_selector,
                                    selector_from_set)

LABELS = {"app": "web", "tier": "front", "env": "prod"}


@pytest.mark.parametrize("text,matches", [
    pytest.param("", True, id="empty-selects-all"),
    pytest.param("app=web", True, id="equals"),
    pytest.param("app==web", True, id="double-equals"),
    pytest.param("app!=web", False, id="not-equals"),
    pytest.param("missing!=x", True, id="not-equals-absent-key"),
    pytest.param("app in (web,db)", True, id="in"),
    pytest.param("app notin (web)", False, id="notin"),
    pytest.param("missing notin (a)", True, id="notin-absent"),
    pytest.param("tier", True, id="exists"),
    pytest.param("!tier", False, id="not-exists"),
    pytest.param("!missing", True, id="not-exists-absent"),
    pytest.param("app=web, tier in ( front , back ),!debug", True, id="spaces-and-mixed"),
    pytest.param("app=web,env=dev", False, id="conjunction"),
    pytest.param("example.com/role=x", False, id="prefixed-key"),
])
def test_label_selector_matches(text, matches):
    """Each term matches as upstream: != and notin also match a missing key."""
    assert parse_label_selector(text).matches(LABELS) is matches


def test_label_selector_gt_lt():
    sel = parse_label_selector("replicas>2,replicas<5")
    assert sel.matches({"replicas": "3"}) and not sel.matches({"replicas": "5"})


@pytest.mark.parametrize("text", [
    "app=", ])
def test_label_selector_empty_value_allowed(text):
    assert parse_label_selector(text).matches({"app": ""})


@pytest.mark.parametrize("text,fragment", [
    pytest.param("app in ()", "can't be empty", id="empty-set"),
    pytest.param("app in (a", "expected", id="unclosed"),
    pytest.param("app=web,", "end of string", id="trailing-comma"),
    pytest.param("a b", "found 'b'", id="junk-operator"),
    pytest.param("-bad=x", "invalid label key", id="bad-key"),
    pytest.param("app=-bad-", "invalid label value", id="bad-value"),
    pytest.param("x>a", "integer", id="gt-not-int"),
    pytest.param("app in a", "expected: '('", id="in-without-paren"),
])
def test_label_selector_errors(text, fragment):
    """Bad syntax raises ValueError whose message says what is wrong."""
    with pytest.raises(ValueError) as e:
        parse_label_selector(text)
    assert fragment in str(e.value)


def test_label_selector_object():
    sel = label_selector_from_object({"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["front"]},
        {"key": "debug", "operator": "DoesNotExist"}]})
    assert sel.matches(LABELS)
    assert not sel.matches({"app": "web", "tier": "front", "debug": "1"})
    assert str(sel) == "app=web,tier in (front),!debug"


def test_label_selector_object_nil_and_empty():
    """nil selects nothing, {} selects everything (metav1.LabelSelectorAsSelector)."""
    assert not label_selector_from_object(None).matches(LABELS)
    assert label_selector_from_object({}).matches(LABELS)


@pytest.mark.parametrize("expr", [
    {"key": "a", "operator": "Bogus", "values": ["x"]},
    {"key": "a", "operator": "In", "values": []},
    {"key": "a", "operator": "Exists", "values": ["x"]},
])
def test_label_selector_object_errors(expr):
    with pytest.raises(ValueError):
        label_selector_from_object({"matchExpressions": [expr]})


def test_selector_from_set_roundtrip():
    sel = selector_from_set({"b": "2", "a": "1"})
    assert str(sel) == "a=1,b=2"
    assert parse_label_selector(str(sel)) == sel


def test_field_selector():
    fs = parse_field_selector("spec.nodeName=node-1,status.phase!=Failed")
    assert fs.matches({"spec.nodeName": "node-1", "status.phase": "Running"})
    assert not fs.matches({"spec.nodeName": "node-1", "status.phase": "Failed"})
    assert fs.exact("spec.nodeName") == "node-1"
    assert fs.fields() == {"spec.nodeName", "status.phase"}


def test_field_selector_escapes_and_double_equals():
    fs = parse_field_selector(r"metadata.name==a\,b,involvedObject.fieldPath=x\=y")
    assert fs.matches({"metadata.name": "a,b", "involvedObject.fieldPath": "x=y"})
    assert parse_field_selector(str(fs)) == fs


def test_field_selector_empty_value_matches_missing():
    assert parse_field_selector("spec.nodeName=").matches({})


@pytest.mark.parametrize("text", ["metadata.name", "a=b,", "=x", r"a=b\q"])
def test_field_selector_errors(text):
    with pytest.raises(ValueError):
        parse_field_selector(text)
