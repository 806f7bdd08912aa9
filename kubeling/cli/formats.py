"""The machine-readable outputs: ``-o yaml``, ``-o json`` and ``-o name``.

Mirrors cli-runtime's printers: YAML and JSON with keys sorted (Go marshals
maps sorted), JSON indented by four spaces, several objects wrapped in a
``kind: List`` whose metadata.resourceVersion is empty, names as
``deployment.apps/web``.
"""
from __future__ import annotations

import json

import yaml

from kubeling.api import resources as res
from kubeling.cli import jsonpath
from kubeling.cli.factory import kind_group

OUTPUT_FORMATS = ("json", "name", "wide", "yaml")


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (the last-applied annotation reads as kubectl shows it)."""


def _str_representer(dumper: yaml.SafeDumper, value: str):
    # Go's YAML encoder: literal block for multi-line text, double quotes where
    # a plain scalar would read as another type ("9", "true", timestamps) or is not allowed.
    style = None
    if "\n" in value and not value.startswith(" "):
        style = "|"
    elif (not value or dumper.resolve(yaml.ScalarNode, value, (True, False)) != "tag:yaml.org,2002:str"
          or not dumper.analyze_scalar(value).allow_block_plain):
        style = '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def to_yaml(obj) -> str:
    """YAML text of ``obj`` (sorted keys, no line wrapping), ending in a newline."""
    return yaml.dump(obj, Dumper=_Dumper, default_flow_style=False, sort_keys=True,
                     allow_unicode=True, width=1 << 30)


def to_json(obj) -> str:
    """JSON text of ``obj`` indented by four spaces, keys sorted, ending in a newline."""
    return json.dumps(obj, indent=4, sort_keys=True, ensure_ascii=False) + "\n"


def with_type(obj: dict, r: res.Resource) -> dict:
    """``obj`` with apiVersion and kind set (list items come without them)."""
    if obj.get("kind") and obj.get("apiVersion"):
        return obj
    return {"apiVersion": r.api_version, "kind": r.kind, **obj}


def as_list(items: list[dict]) -> dict:
    """Several objects as kubectl prints them together: a v1 ``List``."""
    return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}


def name_of(obj: dict, r: res.Resource) -> str:
    """``-o name`` form: ``deployment.apps/web``, ``pod/web-1``."""
    return f"{kind_group(r)}/{(obj.get('metadata') or {}).get('name', '')}"


def render(objects: list[tuple[dict, res.Resource]], output: str, *, single: bool,
           template: str | None = None) -> str:
    """Text for ``-o yaml|json|name|jsonpath`` of ``objects``; ``single`` prints one
    object bare instead of inside a List (``get pod NAME``); ``template`` is the jsonpath."""
    if output == "name":
        return "".join(name_of(o, r) + "\n" for o, r in objects)
    typed = [with_type(o, r) for o, r in objects]
    doc = typed[0] if single and len(typed) == 1 else as_list(typed)
    if output == "jsonpath":
        return jsonpath.evaluate(template or "", doc)
    return to_yaml(doc) if output == "yaml" else to_json(doc)
