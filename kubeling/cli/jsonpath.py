"""``-o jsonpath=TEMPLATE``: the subset of kubectl's JSONPath that scripts use.

Mirrors k8s.io/client-go/util/jsonpath for templates such as
``{.spec.clusterIP}``, ``{.items[*].metadata.name}``, ``{.items[0].status.podIP}``
and ``{.metadata.labels.app}`` mixed with literal text: several results of
one expression are joined by spaces, as kubectl prints them. ``range``,
filters and functions are not supported and raise CLIError.
"""
from __future__ import annotations

import json
import re

from kubeling.cli.errors import CLIError

_STEP = re.compile(r"\.([^.\[\]\s]+)|\[(\*|-?\d+)\]|\['([^']*)'\]")


def _steps(expr: str, template: str) -> list:
    given = expr = expr.strip()
    if expr in ("", "."):
        return []
    if expr.startswith("$"):
        expr = expr[1:]
    if not expr.startswith((".", "[")):
        expr = "." + expr
    steps, pos = [], 0
    for m in _STEP.finditer(expr):
        if m.start() != pos:
            break
        steps.append(m.group(1) or m.group(3) or m.group(2))
        pos = m.end()
    if pos != len(expr) or not steps:
        raise CLIError(f"error parsing jsonpath {template}, unsupported expression {{{given}}}")
    return steps


def _walk(values: list, step: str) -> list:
    out = []
    for v in values:
        if step == "*":
            out.extend(v if isinstance(v, list) else list(v.values()) if isinstance(v, dict) else [])
        elif re.fullmatch(r"-?\d+", step) and isinstance(v, list):
            i = int(step)
            if -len(v) <= i < len(v):
                out.append(v[i])
        elif isinstance(v, dict) and step in v:
            out.append(v[step])
    return out


def _text(value) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def evaluate(template: str, obj) -> str:
    """Render ``template`` against ``obj``. Raises CLIError for unsupported or malformed templates."""
    out, pos = [], 0
    for m in re.finditer(r"\{([^{}]*)\}", template):
        out.append(template[pos:m.start()])
        pos = m.end()
        literal = re.fullmatch(r"\s*(\"[^\"]*\"|'[^']*')\s*", m.group(1))
        if literal:
            out.append(literal.group(1)[1:-1])
            continue
        values = [obj]
        for step in _steps(m.group(1), template):
            values = _walk(values, step)
        out.append(" ".join(_text(v) for v in values))
    out.append(template[pos:])
    return "".join(out).replace("\\n", "\n").replace("\\t", "\t")
