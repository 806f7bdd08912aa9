"""Label and field selectors, shared by the apiserver, controllers, scheduler and CLI.

Mirrors k8s.io/apimachinery's ``pkg/labels`` (string syntax
``a=b,c!=d,e in (x,y),f notin (z),g,!h``, plus ``metav1.LabelSelector``
objects with matchLabels/matchExpressions) and ``pkg/fields`` (``a=b,c!=d``
with ``\\`` escapes). Parsing failures raise ValueError with a message that
names the offending part; the apiserver turns them into 400 BadRequest.
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping, NamedTuple

__all__ = [
    "Requirement", "LabelSelector", "FieldRequirement", "FieldSelector",
    "parse_label_selector", "label_selector_from_object", "selector_from_set",
    "parse_field_selector", "validate_label_key", "validate_label_value",
]

# Operators, named as in k8s.io/apimachinery/pkg/selection.
DOES_NOT_EXIST = "!"
EQUALS = "="
DOUBLE_EQUALS = "=="
IN = "in"
NOT_EQUALS = "!="
NOT_IN = "notin"
EXISTS = "exists"
GREATER_THAN = "gt"
LESS_THAN = "lt"

_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS1123_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def validate_label_key(key: str) -> str | None:
    """Return None if ``key`` is a valid qualified name (``[prefix/]name``), else why not.

    Mirrors apimachinery's validation.IsQualifiedName: the name part at most
    63 characters of ``[A-Za-z0-9_.-]`` starting and ending alphanumeric, the
    optional prefix a DNS-1123 subdomain of at most 253 characters.
    """
    prefix, _, name = key.rpartition("/")
    if "/" in key and not prefix:
        return "prefix part must be non-empty"
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN_RE.match(prefix)):
        return "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric " \
               "characters, '-' or '.', and must start and end with an alphanumeric character"
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not _NAME_RE.match(name):
        return "name part must consist of alphanumeric characters, '-', '_' or '.', and must start " \
               "and end with an alphanumeric character"
    return None


def validate_label_value(value: str) -> str | None:
    """Return None if ``value`` is a valid label value (empty, or at most 63 chars
    of ``[A-Za-z0-9_.-]`` starting and ending alphanumeric), else why not."""
    if value == "":
        return None
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _NAME_RE.match(value):
        return "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' " \
               "or '.', and must start and end with an alphanumeric character"
    return None


class Requirement(NamedTuple):
    """One term of a label selector: ``Requirement("tier", "in", ("web", "db"))``.

    ``operator`` is one of ``= == != in notin exists ! gt lt``; ``values`` is
    empty for exists/``!``, one value for ``= == != gt lt``, one or more for in/notin.
    """

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this term (``!=`` and notin match an absent key)."""
        op = self.operator
        if op in (EQUALS, DOUBLE_EQUALS, IN):
            return self.key in labels and labels[self.key] in self.values
        if op in (NOT_EQUALS, NOT_IN):
            return self.key not in labels or labels[self.key] not in self.values
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        if op in (GREATER_THAN, LESS_THAN):
            if self.key not in labels:
                return False
            try:
                have, want = int(labels[self.key]), int(self.values[0])
            except ValueError:
                return False
            return have > want if op == GREATER_THAN else have < want
        return False

    def __str__(self) -> str:
        op = self.operator
        if op == EXISTS:
            return self.key
        if op == DOES_NOT_EXIST:
            return "!" + self.key
        if op in (IN, NOT_IN):
            return f"{self.key} {op} ({','.join(sorted(self.values))})"
        sym = {GREATER_THAN: ">", LESS_THAN: "<"}.get(op, op)
        return f"{self.key}{sym}{self.values[0]}"


class LabelSelector(NamedTuple):
    """A conjunction of Requirements; no requirements selects everything.

    ``nothing=True`` is apimachinery's ``labels.Nothing()`` (a nil
    metav1.LabelSelector): it matches no object at all.
    """

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Whether an object with ``labels`` (None = no labels) is selected."""
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def empty(self) -> bool:
        """True when the selector selects everything."""
        return not self.nothing and not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _make_requirement(key: str, op: str, values: Iterable[str]) -> Requirement:
    values = tuple(values)
    why = validate_label_key(key)
    if why:
        raise ValueError(f"invalid label key {key!r}: {why}")
    if op in (IN, NOT_IN) and not values:
        raise ValueError(f"for '{op}' operator on key {key!r}, values set can't be empty")
    if op in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN) and len(values) != 1:
        raise ValueError(f"exact-match compatibility requires one single value for key {key!r}")
    if op in (EXISTS, DOES_NOT_EXIST) and values:
        raise ValueError(f"values set must be empty for exists and does not exist (key {key!r})")
    if op in (GREATER_THAN, LESS_THAN):
        try:
            int(values[0])
        except ValueError:
            raise ValueError(f"for 'Gt', 'Lt' operators, the value must be an integer (key {key!r})") from None
    for v in values:
        why = validate_label_value(v)
        if why:
            raise ValueError(f"invalid label value {v!r} for key {key!r}: {why}")
    return Requirement(key, op, values)


_TOKEN_RE = re.compile(r"\s*(!=|==|=|!|\(|\)|,|>|<|[^\s!=(),<>]+)")


def _tokenize(text: str) -> list[str]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN_RE.match(text, pos)
        if not m:  # pragma: no cover - every non-space char starts some token
            raise ValueError(f"unable to parse label selector {text!r} at position {pos}")
        tokens.append(m.group(1))
        pos = m.end()
    return tokens


_SPECIAL = {"!=", "==", "=", "!", "(", ")", ",", ">", "<"}


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse the string form used in ``?labelSelector=`` and ``kubectl -l``.

    Grammar as apimachinery's labels.Parse: comma-separated terms, each
    ``k``, ``!k``, ``k=v``, ``k==v``, ``k!=v``, ``k in (v1,v2)``,
    ``k notin (v1,v2)``, ``k>n`` or ``k<n``. ``""``/None selects everything.
    Raises ValueError naming the problem, e.g. ``found ')', expected: identifier``.
    """
    if text is None or not text.strip():
        return LabelSelector()
    toks = _tokenize(text)
    reqs: list[Requirement] = []
    i = 0

    def expect_identifier(what: str) -> str:
        nonlocal i
        if i >= len(toks):
            raise ValueError(f"unable to parse requirement in {text!r}: found end of string, expected: {what}")
        tok = toks[i]
        if tok in _SPECIAL:
            raise ValueError(f"unable to parse requirement in {text!r}: found '{tok}', expected: {what}")
        i += 1
        return tok

    while True:
        if i < len(toks) and toks[i] == "!":
            i += 1
            key = expect_identifier("identifier after '!'")
            reqs.append(_make_requirement(key, DOES_NOT_EXIST, ()))
        else:
            key = expect_identifier("identifier")
            if i >= len(toks) or toks[i] == ",":
                reqs.append(_make_requirement(key, EXISTS, ()))
            else:
                op = toks[i]
                i += 1
                if op in ("=", "==", "!="):
                    value = ""
                    if i < len(toks) and toks[i] not in _SPECIAL:
                        value = toks[i]
                        i += 1
                    reqs.append(_make_requirement(key, op, (value,)))
                elif op in (">", "<"):
                    value = expect_identifier("integer value")
                    reqs.append(_make_requirement(key, GREATER_THAN if op == ">" else LESS_THAN, (value,)))
                elif op in (IN, NOT_IN):
                    if i >= len(toks) or toks[i] != "(":
                        raise ValueError(f"unable to parse requirement in {text!r}: found "
                                         f"'{toks[i] if i < len(toks) else ''}', expected: '('")
                    i += 1
                    values: list[str] = []
                    while True:
                        if i < len(toks) and toks[i] == ")" and not values:
                            break  # "in ()" is caught by _make_requirement
                        if i < len(toks) and toks[i] not in _SPECIAL:
                            values.append(toks[i])
                            i += 1
                        elif i < len(toks) and toks[i] in (",", ")"):
                            values.append("")  # "in (a,)" names the empty value, as upstream
                        else:
                            raise ValueError(f"unable to parse requirement in {text!r}: expected a value "
                                             f"list after '{op}'")
                        if i < len(toks) and toks[i] == ",":
                            i += 1
                            continue
                        if i < len(toks) and toks[i] == ")":
                            break
                        raise ValueError(f"unable to parse requirement in {text!r}: found "
                                         f"'{toks[i] if i < len(toks) else ''}', expected: ',' or ')'")
                    i += 1  # the ')'
                    reqs.append(_make_requirement(key, op, values))
                else:
                    raise ValueError(f"unable to parse requirement in {text!r}: found '{op}', "
                                     f"expected: in, notin, =, ==, !=, gt, lt")
        if i >= len(toks):
            break
        if toks[i] != ",":
            raise ValueError(f"unable to parse requirement in {text!r}: found '{toks[i]}', expected: ','")
        i += 1
        if i >= len(toks):
            raise ValueError(f"unable to parse requirement in {text!r}: found end of string, expected: identifier")
    return LabelSelector(tuple(reqs))


def selector_from_set(labels: Mapping[str, str] | None) -> LabelSelector:
    """Equality selector for every pair of ``labels`` (apimachinery labels.SelectorFromSet)."""
    return LabelSelector(tuple(_make_requirement(k, EQUALS, (v,)) for k, v in sorted((labels or {}).items())))


_EXPR_OPS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def label_selector_from_object(obj: Mapping | None) -> LabelSelector:
    """Selector of a ``metav1.LabelSelector`` dict (``{"matchLabels": {...}, "matchExpressions": [...]}``).

    Mirrors metav1.LabelSelectorAsSelector: None selects nothing, ``{}``
    selects everything. Raises ValueError for an unknown operator, values on
    Exists/DoesNotExist, or empty values on In/NotIn.
    """
    if obj is None:
        return LabelSelector(nothing=True)
    if not isinstance(obj, Mapping):
        raise ValueError("label selector must be an object with matchLabels and/or matchExpressions")
    reqs = [_make_requirement(k, EQUALS, (str(v),)) for k, v in sorted((obj.get("matchLabels") or {}).items())]
    for n, expr in enumerate(obj.get("matchExpressions") or []):
        op = _EXPR_OPS.get((expr or {}).get("operator", ""))
        if op is None:
            raise ValueError(f"matchExpressions[{n}].operator: {expr.get('operator')!r} is not a valid "
                             f"label selector operator (In, NotIn, Exists, DoesNotExist)")
        reqs.append(_make_requirement(expr.get("key", ""), op, [str(v) for v in expr.get("values") or []]))
    return LabelSelector(tuple(reqs))


class FieldRequirement(NamedTuple):
    """One term of a field selector: ``FieldRequirement("spec.nodeName", "=", "node-1")``."""

    field: str
    operator: str  # "=" or "!=" ("==" is normalised to "=")
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Whether the flattened ``fields`` satisfy this term (absent field = "")."""
        have = fields.get(self.field, "")
        return have == self.value if self.operator == "=" else have != self.value


class FieldSelector(NamedTuple):
    """A conjunction of FieldRequirements; no terms selects everything."""

    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Whether the object's flattened fields (``{"metadata.name": "x", ...}``) are selected."""
        return all(r.matches(fields) for r in self.requirements)

    def empty(self) -> bool:
        """True when the selector selects everything."""
        return not self.requirements

    def fields(self) -> set[str]:
        """The field names the selector refers to (for "field label not supported" checks)."""
        return {r.field for r in self.requirements}

    def exact(self, field: str) -> str | None:
        """The value required by an ``field=value`` term, if there is one (for index lookups)."""
        for r in self.requirements:
            if r.field == field and r.operator == "=":
                return r.value
        return None

    def __str__(self) -> str:
        return ",".join(f"{r.field}{r.operator}{_escape(r.value)}" for r in self.requirements)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if c == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=":
                raise ValueError(f"invalid field selector value {value!r}: invalid escape sequence")
            out.append(value[i + 1])
            i += 2
            continue
        if c in ",=":
            raise ValueError(f"invalid field selector value {value!r}: unescaped {c!r}")
        out.append(c)
        i += 1
    return "".join(out)


def parse_field_selector(text: str | None) -> FieldSelector:
    """Parse ``?fieldSelector=`` (``metadata.name=x,status.phase!=Running``).

    Mirrors apimachinery's fields.ParseSelector: terms joined by ``,``,
    operators ``=``, ``==`` and ``!=``, ``\\,`` ``\\=`` ``\\\\`` escapes in values.
    Raises ValueError (``invalid selector: 'x'; can't understand 'x'``).
    """
    if text is None or not text.strip():
        return FieldSelector()
    reqs = []
    for part in _split_unescaped(text, ","):
        term = part.strip()
        if not term:
            raise ValueError(f"invalid selector: {text!r}; empty term")
        for op in ("!=", "==", "="):
            idx = _find_unescaped(term, op)
            if idx >= 0:
                field, value = term[:idx].strip(), term[idx + len(op):]
                if not field:
                    raise ValueError(f"invalid selector: {text!r}; missing field name in {term!r}")
                reqs.append(FieldRequirement(field, "!=" if op == "!=" else "=", _unescape(value)))
                break
        else:
            raise ValueError(f"invalid selector: '{text}'; can't understand '{term}'")
    return FieldSelector(tuple(reqs))


def _find_unescaped(text: str, op: str) -> int:
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith(op, i):
            return i
        i += 1
    return -1
