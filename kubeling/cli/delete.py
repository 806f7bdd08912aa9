"""``kubeling delete``: delete objects and, by default, wait until they are gone.

Mirrors k8s.io/kubectl/pkg/cmd/delete: objects from ``-f``, ``TYPE NAME...``,
``TYPE/NAME``, ``TYPE -l SELECTOR`` or ``TYPE --all``; DELETE with
DeleteOptions ``propagationPolicy: Background`` (``--cascade``); prints
``deployment.apps "web" deleted``; ``--wait`` (default true) then waits,
bounded by ``--timeout``, until each object is gone or has been replaced by
a new one with another uid (graceful pod deletion keeps the object until
the kubelet has stopped its containers).
"""
from __future__ import annotations

import asyncio
import time

from kubeling import duration
from kubeling.cli import get
from kubeling.cli.errors import CLIError, server_error_line
from kubeling.cli.factory import Factory, kind_group
from kubeling.client import ApiError, Client

POLL_INTERVAL = 0.2


def parse_duration(text: str, flag: str = "timeout") -> float:
    """A Go-style duration (``60s``, ``2m``, ``1m30s``, ``500ms``, bare seconds ``30``) -> seconds.

    Raises CLIError on anything else.
    """
    try:
        return duration.parse_duration(text)
    except ValueError as e:
        raise CLIError(f'invalid argument "{text}" for "--{flag}" flag: {e}') from None


def parse_bool(text: str, flag: str) -> bool:
    """``true``/``false`` (and the other spellings Go's strconv.ParseBool takes) -> bool."""
    value = text.strip().lower()
    if value in ("1", "t", "true"):
        return True
    if value in ("0", "f", "false"):
        return False
    raise CLIError(f'invalid argument "{text}" for "--{flag}" flag: strconv.ParseBool: parsing "{text}": '
                   "invalid syntax")


async def _targets(c: Client, f: Factory, args) -> list[tuple]:
    """(resource, name, namespace) to delete, listing for ``-l`` / ``--all``."""
    if args.filename:
        reqs = get.requests_from_files(f, args.filename, args.recursive)
    else:
        if not args.args:
            raise CLIError("You must provide one or more resources by argument or filename.")
        reqs = get.parse_args(args.args)
    out = []
    for req in reqs:
        ns = get.namespace_for(f, req, bool(args.all_namespaces))
        if req.names:
            out.extend((req.resource, n, req.namespace or ns) for n in req.names)
            continue
        if not (args.selector or args.field_selector or args.all):
            raise CLIError("resource(s) were provided, but no name was specified")
        listed = await c.list(req.resource, namespace=ns, label_selector=args.selector,
                              field_selector=args.field_selector)
        for item in listed.get("items") or []:
            meta = item.get("metadata") or {}
            out.append((req.resource, meta.get("name", ""), meta.get("namespace") or ns))
    return out


async def wait_gone(c: Client, r, name: str, namespace: str | None, uid: str | None, deadline: float) -> bool:
    """Poll until ``name`` is absent or has another uid; False if ``deadline`` (monotonic) passed."""
    while True:
        try:
            live = await c.get(r, name, namespace=namespace)
        except ApiError as e:
            if e.code == 404:
                return True
            raise
        if uid and (live.get("metadata") or {}).get("uid") != uid:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL_INTERVAL)


def propagation_policy(cascade: str) -> str:
    """``--cascade`` -> DeleteOptions.propagationPolicy (Background, Foreground, Orphan).

    Raises CLIError for other values, with kubectl's message.
    """
    policies = {"background": "Background", "true": "Background", "foreground": "Foreground",
                "orphan": "Orphan", "false": "Orphan"}
    try:
        return policies[cascade.lower()]
    except KeyError:
        raise CLIError(f'invalid cascade value ({cascade}). Must be "background", "foreground", '
                       'or "orphan"') from None


async def run(args, f: Factory) -> int:
    """``delete``: see the module docstring. Exit 1 on a missing object (unless
    ``--ignore-not-found``) or when waiting timed out."""
    wait = parse_bool(args.wait, "wait")
    policy = propagation_policy(args.cascade)
    timeout = parse_duration(args.timeout)
    grace = args.grace_period
    if args.now:
        grace = 1
    if args.force and grace is None:
        grace = 0
    if grace is not None and grace < 0:
        grace = None
    if grace == 0 and not args.force:
        raise CLIError("--grace-period=0 must have --force specified")
    failures: list[str] = []
    deleted: list[tuple] = []
    async with f.client() as c:
        targets = await _targets(c, f, args)
        if not targets:
            f.warn("No resources found")
            return 0
        if args.force:
            f.warn("Warning: Immediate deletion does not wait for confirmation that the running resource "
                   "has been terminated. The resource may continue to run on the cluster indefinitely.")
        for r, name, ns in targets:
            try:
                answer = await c.delete(r, name, namespace=ns, grace_period_seconds=grace,
                                        propagation_policy=policy)
            except ApiError as e:
                if e.code == 404 and args.ignore_not_found:
                    continue
                failures.append(server_error_line(e))
                continue
            uid = (answer.get("metadata") or {}).get("uid") if answer.get("kind") != "Status" else None
            f.print(f'{kind_group(r)} "{name}" {"force deleted" if args.force else "deleted"}')
            deleted.append((r, name, ns, uid))
        if wait and deleted:
            deadline = time.monotonic() + timeout
            for r, name, ns, uid in deleted:
                if not await wait_gone(c, r, name, ns, uid, deadline):
                    failures.append(f"error: timed out waiting for the condition on {r.plural}/{name}")
    for line in failures:
        f.warn(line)
    return 1 if failures else 0
