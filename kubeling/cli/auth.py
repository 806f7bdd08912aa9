"""``kubeling auth can-i`` and ``kubeling auth whoami``: ask the apiserver what the caller may do and who it is.

Mirrors kubectl's pkg/cmd/auth (cani.go, whoami.go): ``can-i VERB TYPE[/NAME]``
or ``can-i VERB /non-resource-url`` posts a SelfSubjectAccessReview and prints
``yes`` (exit 0) or ``no`` with the server's reason (exit 1); ``whoami`` posts a
SelfSubjectReview and prints the user's attributes.
"""
from __future__ import annotations

from kubeling.api import resources as res
from kubeling.cli import formats
from kubeling.cli.errors import CLIError
from kubeling.cli.factory import Factory

SSAR_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
SSR_PATH = "/apis/authentication.k8s.io/v1/selfsubjectreviews"


def access_review(verb: str, target: str, *, namespace: str, subresource: str = "") -> tuple[dict, str | None]:
    """``(SelfSubjectAccessReview body, warning)`` for ``can-i VERB TARGET``; TARGET is ``TYPE``,
    ``TYPE/NAME`` or a non-resource URL starting with ``/``. An unknown type is asked as given, with
    kubectl's warning."""
    if target.startswith("/"):
        spec = {"nonResourceAttributes": {"verb": verb, "path": target}}
        return {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": spec}, None
    kind, _, name = target.partition("/")
    warning = None
    try:
        r = res.for_name(kind)
        group, resource = r.group, r.plural
    except KeyError:
        resource, _, group = kind.partition(".")
        warning = f"Warning: the server doesn't have a resource type '{kind}'"
    attrs = {"namespace": namespace, "verb": verb, "group": group, "resource": resource}
    if subresource:
        attrs["subresource"] = subresource
    if name:
        attrs["name"] = name
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attrs}}, warning


async def can_i(args, f: Factory) -> int:
    """``auth can-i VERB TYPE[/NAME] [-n NS] [-A] [--subresource S] [-q]``: 0 for yes, 1 for no."""
    words = args.args
    if len(words) != 2:
        raise CLIError("you must specify two arguments: verb resource or verb resourceURL")
    namespace = "" if args.all_namespaces else f.effective_namespace
    body, warning = access_review(words[0], words[1], namespace=namespace, subresource=args.subresource or "")
    if warning and not args.quiet:
        f.err.write(warning + "\n")
    async with f.client() as c:
        review = await c.request("POST", SSAR_PATH, body=body)
    status = review.get("status") or {}
    if args.quiet:
        return 0 if status.get("allowed") else 1
    if status.get("allowed"):
        f.print("yes")
        return 0
    line = "no"
    if status.get("reason"):
        line += f" - {status['reason']}"
    if status.get("evaluationError"):
        line += f"\n{status['evaluationError']}"
    f.print(line)
    return 1


async def whoami(args, f: Factory) -> int:
    """``auth whoami [-o json|yaml]``: the caller's user name, uid, groups and extra."""
    async with f.client() as c:
        review = await c.request("POST", SSR_PATH, body={"apiVersion": "authentication.k8s.io/v1",
                                                        "kind": "SelfSubjectReview"})
    if args.output in ("json", "yaml"):
        f.out.write(formats.to_json(review) if args.output == "json" else formats.to_yaml(review))
        return 0
    if args.output:
        raise CLIError("--output must be 'yaml' or 'json'")
    info = (review.get("status") or {}).get("userInfo") or {}
    rows = [("Username", info.get("username", ""))]
    if info.get("uid"):
        rows.append(("UID", info["uid"]))
    if info.get("groups"):
        rows.append(("Groups", "[" + " ".join(info["groups"]) + "]"))
    for k, v in sorted((info.get("extra") or {}).items()):
        rows.append((f"Extra: {k}", "[" + " ".join(v) + "]"))
    width = max(len("ATTRIBUTE"), *(len(k) for k, _ in rows)) + 3
    f.print("ATTRIBUTE".ljust(width) + "VALUE")
    for k, v in rows:
        f.print(k.ljust(width) + v)
    return 0


async def run(args, f: Factory) -> int:
    """``auth ACTION ...``: dispatch to can-i or whoami."""
    if args.action == "can-i":
        return await can_i(args, f)
    if args.args:
        raise CLIError(f'unknown command "{args.args[0]}" for "kubeling auth whoami"')
    return await whoami(args, f)
