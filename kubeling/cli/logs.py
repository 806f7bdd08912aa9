"""``kubeling logs``: print (or follow) a container's log through the apiserver.

Mirrors k8s.io/kubectl/pkg/cmd/logs: ``logs POD`` or ``logs TYPE/NAME``
(a deployment or replicaset picks one of its pods, preferring running and
ready ones, and says which on stderr), ``-c`` chooses the container (else
the ``kubectl.kubernetes.io/default-container`` annotation, else the first,
with kubectl's "Defaulted container" note), then GET
``pods/NAME/log?container=&follow=&tailLines=&timestamps=`` and copy the
text body to stdout as it arrives.
"""
from __future__ import annotations

from kubeling.api import resources as res
from kubeling.cli import printers
from kubeling.cli.errors import CLIError
from kubeling.cli.factory import Factory, resource_for
from kubeling.client import Client

DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"
PODS = res.for_name("pods")


def _pod_rank(pod: dict) -> tuple:
    # Prefer pods that can serve logs: scheduled, running, ready, then the newest.
    status = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return (bool((pod.get("spec") or {}).get("nodeName")), status.get("phase") == "Running", ready,
            (pod.get("metadata") or {}).get("creationTimestamp") or "")


async def resolve_pod(c: Client, f: Factory, target: str, namespace: str) -> dict:
    """The pod ``target`` names: ``NAME``, ``pod/NAME`` or a controller ``deploy/NAME``.

    Raises ApiError (404) when absent, CLIError when the controller has no pods.
    """
    kind, _, name = target.rpartition("/")
    if not kind or resource_for(kind) == PODS:
        return await c.get(PODS, name, namespace=namespace)
    r = resource_for(kind)
    owner = await c.get(r, name, namespace=namespace)
    selector = printers.format_label_selector((owner.get("spec") or {}).get("selector"))
    if selector == "<none>":
        raise CLIError(f"cannot get the logs from {r.kind}: no selector")
    pods = (await c.list(PODS, namespace=namespace, label_selector=selector)).get("items") or []
    if not pods:
        raise CLIError(f"timed out waiting for the condition: no pods found for {r.singular}/{name}")
    pods.sort(key=_pod_rank, reverse=True)
    if len(pods) > 1:
        f.warn(f"Found {len(pods)} pods, using pod/{pods[0]['metadata']['name']}")
    return pods[0]


def pick_container(pod: dict, requested: str | None, f: Factory) -> str:
    """The container to read: ``-c``, else the default-container annotation, else the first."""
    spec = pod.get("spec") or {}
    names = [c.get("name") for c in spec.get("containers") or []]
    all_names = [c.get("name") for c in spec.get("initContainers") or []] + names
    if requested:
        if requested not in all_names:
            raise CLIError(f'container {requested} is not valid for pod {pod["metadata"]["name"]}')
        return requested
    annotated = ((pod.get("metadata") or {}).get("annotations") or {}).get(DEFAULT_CONTAINER)
    if annotated in names:
        return annotated
    if not names:
        raise CLIError(f'pod {pod["metadata"]["name"]} has no containers')
    if len(names) > 1:
        f.warn(f'Defaulted container "{names[0]}" out of: {", ".join(all_names)}')
    return names[0]


async def run(args, f: Factory) -> int:
    """``logs POD [-c C] [-f] [--tail N] [--timestamps] [--previous]``: stream the log to stdout."""
    if not args.args:
        raise CLIError("expected 'logs [-f] [-p] (POD | TYPE/NAME) [-c CONTAINER]'. "
                       "POD or TYPE/NAME is a required argument for the logs command")
    if len(args.args) > 2 or (len(args.args) == 2 and args.container):
        raise CLIError("only one of -c or an inline [CONTAINER] arg is allowed")
    container = args.container or (args.args[1] if len(args.args) == 2 else None)
    ns = f.effective_namespace
    async with f.client() as c:
        pod = await resolve_pod(c, f, args.args[0], ns)
        name = pod["metadata"]["name"]
        params = {"container": pick_container(pod, container, f),
                  "follow": "true" if args.follow else None,
                  "tailLines": args.tail if args.tail is not None and args.tail >= 0 else None,
                  "timestamps": "true" if args.timestamps else None,
                  "previous": "true" if args.previous else None}
        async for chunk in c.stream_text(PODS.path(namespace=ns, name=name, subresource="log"), params=params):
            f.out.write(chunk)
            f.out.flush()
    return 0
