"""Reading manifests for ``-f``: files, directories and stdin; YAML and JSON.

Mirrors kubectl's resource builder (k8s.io/cli-runtime/pkg/resource): a
directory contributes its ``.json``, ``.yaml`` and ``.yml`` files (recursively
with ``-R``), a file may hold several YAML documents, ``*List`` kinds are
expanded into their items, and every object must say its apiVersion and kind.
Errors name the file and, for YAML syntax errors, the line, as kubectl's do.
"""
from __future__ import annotations

import json
import pathlib
import sys
from typing import NamedTuple

import yaml

from kubeling.cli.errors import CLIError

FILE_EXTENSIONS = (".json", ".yaml", ".yml")


class Manifest(NamedTuple):
    """One object read from a manifest and the source it came from (a path or ``STDIN``)."""

    obj: dict
    source: str


def _yaml_error(source: str, err: yaml.YAMLError) -> CLIError:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    return CLIError(f"error parsing {source}: error converting YAML to JSON: yaml: {where}{problem}")


def parse_documents(text: str, source: str) -> list[dict]:
    """Objects in ``text`` (JSON, or YAML with ``---``-separated documents).

    Empty documents are skipped; ``List`` kinds are expanded. Raises CLIError
    for syntax errors (with the line) and documents that are not objects or
    lack apiVersion/kind (kubectl's "error validating" message).
    """
    stripped = text.lstrip()
    docs: list
    if stripped.startswith("{") or stripped.startswith("["):
        try:
            docs = [json.loads(text)]
        except ValueError as e:
            # Not valid JSON; YAML is a superset and gives a line number, so try it.
            try:
                docs = list(yaml.safe_load_all(text))
            except yaml.YAMLError:
                raise CLIError(f"error parsing {source}: {e}") from None
    else:
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError as e:
            raise _yaml_error(source, e) from None
    objects: list[dict] = []
    for doc in docs:
        if doc is None:
            continue
        if isinstance(doc, list):
            items = doc
        elif isinstance(doc, dict):
            items = [doc]
        else:
            raise CLIError(f"error parsing {source}: error unmarshaling JSON: "
                           f"cannot unmarshal {type(doc).__name__} into an object")
        for item in items:
            objects.extend(_expand(item, source))
    return objects


def _expand(obj, source: str) -> list[dict]:
    if not isinstance(obj, dict):
        raise CLIError(f"error parsing {source}: an item is not an object")
    missing = [f"{f} not set" for f in ("apiVersion", "kind") if not obj.get(f)]
    if missing:
        what = missing[0] if len(missing) == 1 else "[" + ", ".join(missing) + "]"
        raise CLIError(f'error validating "{source}": error validating data: {what}; if you choose to '
                       "ignore these errors, turn validation off with --validate=false")
    if obj["kind"].endswith("List") and isinstance(obj.get("items"), list):
        out: list[dict] = []
        for item in obj["items"]:
            out.extend(_expand(item, source))
        return out
    if not isinstance(obj.get("metadata") or {}, dict):
        raise CLIError(f'error validating "{source}": error validating data: metadata is not an object')
    return [obj]


def _files(path: pathlib.Path, recursive: bool) -> list[pathlib.Path]:
    if path.is_dir():
        pattern = "**/*" if recursive else "*"
        return sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix in FILE_EXTENSIONS)
    return [path]


def load(filenames: list[str], *, verb: str = "apply", recursive: bool = False,
         stdin=None) -> list[Manifest]:
    """Every object named by ``-f`` arguments, in order.

    ``-`` reads stdin (``stdin`` for tests, default sys.stdin); ``verb``
    names the command in the nothing-found error. Raises
    CLIError when a path does not exist, cannot be read or does not parse,
    and when nothing was found at all.
    """
    out: list[Manifest] = []
    for name in filenames:
        if name == "-":
            text = (stdin or sys.stdin).read()
            out.extend(Manifest(o, "STDIN") for o in parse_documents(text, "STDIN"))
            continue
        path = pathlib.Path(name)
        if not path.exists():
            raise CLIError(f'the path "{name}" does not exist')
        for f in _files(path, recursive):
            try:
                text = f.read_text()
            except (OSError, UnicodeDecodeError) as e:
                raise CLIError(f"error reading {f}: {e}") from None
            out.extend(Manifest(o, str(f)) for o in parse_documents(text, str(f)))
    if not out:
        raise CLIError(f"no objects passed to {verb}")
    return out
