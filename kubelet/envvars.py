"""The container environment: literal values, $(VAR) expansion, the downward API and
the ConfigMaps and Secrets a container draws from.

Mirrors pkg/kubelet/kubelet_pods.go (makeEnvironmentVariables: envFrom first,
then env with configMapKeyRef, secretKeyRef, fieldRef, resourceFieldRef),
pkg/fieldpath (ExtractFieldPathAsString) and
third_party/forked/golang/expansion. Errors carry upstream's messages; the
container then waits with CreateContainerConfigError.
"""
from __future__ import annotations

import base64
import math
import re

from kubeling.api import quantity

_FIELD_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['([^']*)'\]$")
_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


class EnvError(Exception):
    """A container's environment could not be built (CreateContainerConfigError)."""


def expand(s: str, env: dict[str, str]) -> str:
    """Expand ``$(VAR)`` references from ``env`` (unknown ones stay as written,
    ``$$`` escapes ``$``); mirrors third_party/forked/golang/expansion."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _VAR_REF.sub(sub, s)


def pod_field(pod: dict, path: str, *, pod_ip: str = "", node_ip: str = "") -> str:
    """The value of a downward-API ``fieldPath`` of ``pod`` (ExtractFieldPathAsString plus the
    kubelet's status fields). Raises EnvError for an unsupported path."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    simple = {"metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", "default"),
              "metadata.uid": meta.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
              "spec.serviceAccountName": spec.get("serviceAccountName", ""),
              "status.podIP": pod_ip, "status.podIPs": pod_ip, "status.hostIP": node_ip,
              "status.hostIPs": node_ip}
    if path in simple:
        return simple[path]
    m = _FIELD_SUBSCRIPT.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(items.items()))
    raise EnvError(f'unsupported fieldPath: "{path}"')


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def resource_field(pod: dict, container_name: str, ref: dict, *, allocatable: dict | None = None) -> str:
    """A ``resourceFieldRef`` value: limits/requests of cpu, memory, ephemeral-storage divided by
    ``divisor`` and rounded up; an unset limit is the node's allocatable (ExtractContainerResourceValue)."""
    name = ref.get("containerName") or container_name
    container = next((c for c in (pod.get("spec") or {}).get("containers") or [] if c.get("name") == name), None)
    if container is None:
        raise EnvError(f"container {name} not found")
    resource = ref.get("resource", "")
    kind, _, what = resource.partition(".")
    if kind not in ("limits", "requests") or what not in ("cpu", "memory", "ephemeral-storage"):
        raise EnvError(f"unsupported container resource: {resource}")
    value = ((container.get("resources") or {}).get(kind) or {}).get(what)
    if value is None and kind == "limits":
        value = (allocatable or {}).get(what)
    if value is None:
        value = "0"
    divisor = quantity.parse_quantity(ref.get("divisor") or "1")
    if divisor == 0:
        raise EnvError(f"invalid divisor for {resource}")
    amount = quantity.parse_quantity(value) / divisor
    return str(max(math.ceil(amount), 1 if what == "cpu" and amount > 0 else 0))


def object_data(obj: dict) -> dict[str, bytes]:
    """Keys of a ConfigMap (data + binaryData) or Secret (base64 data + stringData) as bytes."""
    if obj.get("kind") == "Secret":
        out = {k: base64.b64decode(v or "") for k, v in (obj.get("data") or {}).items()}
        out.update({k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()})
        return out
    out = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    out.update({k: base64.b64decode(v or "") for k, v in (obj.get("binaryData") or {}).items()})
    return out


_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def service_env(pod: dict, services: list[dict]) -> dict[str, str]:
    """Docker-link style variables of the services a pod sees (mirrors pkg/kubelet/envvars
    FromServices and the kubelet's getServiceEnvVarMap): the ``kubernetes`` service of the
    ``default`` namespace always, and every service of the pod's namespace unless
    ``spec.enableServiceLinks`` is false; only services with a cluster IP. For ``web`` on
    10.96.0.5:80/TCP: WEB_SERVICE_HOST, WEB_SERVICE_PORT, WEB_PORT=tcp://10.96.0.5:80,
    WEB_PORT_80_TCP(_PROTO, _PORT, _ADDR), and WEB_SERVICE_PORT_<NAME> per named port."""
    ns = (pod.get("metadata") or {}).get("namespace", "default")
    links = (pod.get("spec") or {}).get("enableServiceLinks", True) is not False
    chosen: dict[str, dict] = {}
    for svc in services:
        meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        ip = spec.get("clusterIP")
        if not ip or ip == "None" or not spec.get("ports"):
            continue
        name, sns = meta.get("name", ""), meta.get("namespace", "default")
        if sns == ns and links:
            chosen[name] = svc
        elif sns == "default" and name == "kubernetes":
            chosen.setdefault(name, svc)
    env: dict[str, str] = {}
    for name in sorted(chosen):
        spec = chosen[name]["spec"]
        ip, ports = spec["clusterIP"], spec["ports"]
        base = name.upper().replace("-", "_")
        env[f"{base}_SERVICE_HOST"] = ip
        env[f"{base}_SERVICE_PORT"] = str(ports[0].get("port"))
        for p in ports:
            if p.get("name"):
                env[f"{base}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p.get("port"))
        first = ports[0]
        env[f"{base}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{ip}:{first.get('port')}"
        for p in ports:
            proto = p.get("protocol", "TCP")
            prefix = f"{base}_PORT_{p.get('port')}_{proto.upper()}"
            env[prefix] = f"{proto.lower()}://{ip}:{p.get('port')}"
            env[f"{prefix}_PROTO"] = proto.lower()
            env[f"{prefix}_PORT"] = str(p.get("port"))
            env[f"{prefix}_ADDR"] = ip
    return env


def container_env(pod: dict, container: dict, *, pod_ip: str, node_ip: str,
                  sources: dict[tuple[str, str], dict | None] | None = None,
                  allocatable: dict | None = None, services: dict[str, str] | None = None) -> dict[str, str]:
    """The container's environment in upstream's order: the service variables (``services``,
    from ``service_env``), then envFrom sources (with prefix), then env entries (literal values
    with $(VAR) expansion, fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef); later
    ones win. ``sources`` maps ("configmaps"|"secrets", name) to the object or None when it
    does not exist. Raises EnvError with upstream's messages for a missing non-optional object or key."""
    sources = sources or {}
    ns = (pod.get("metadata") or {}).get("namespace", "default")
    env: dict[str, str] = dict(services or {})
    for src in container.get("envFrom") or []:
        for field, plural, kind in (("configMapRef", "configmaps", "configmap"), ("secretRef", "secrets", "secret")):
            ref = src.get(field)
            if not ref:
                continue
            obj = sources.get((plural, ref.get("name", "")))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise EnvError(f'{kind} "{ref.get("name", "")}" not found')
            for k, v in object_data(obj).items():
                key = (src.get("prefix") or "") + k
                if _ENV_NAME.match(key):
                    env[key] = v.decode(errors="replace")
    for e in container.get("env") or []:
        name = e.get("name")
        if not name:
            continue
        if "valueFrom" not in e:
            env[name] = expand(str(e.get("value", "")), env)
            continue
        vf = e.get("valueFrom") or {}
        if vf.get("fieldRef"):
            env[name] = pod_field(pod, vf["fieldRef"].get("fieldPath", ""), pod_ip=pod_ip, node_ip=node_ip)
        elif vf.get("resourceFieldRef"):
            env[name] = resource_field(pod, container.get("name", ""), vf["resourceFieldRef"],
                                       allocatable=allocatable)
        else:
            for field, plural, kind, title in (("configMapKeyRef", "configmaps", "configmap", "ConfigMap"),
                                               ("secretKeyRef", "secrets", "secret", "Secret")):
                ref = vf.get(field)
                if not ref:
                    continue
                obj = sources.get((plural, ref.get("name", "")))
                if obj is None:
                    if ref.get("optional"):
                        break
                    raise EnvError(f'{kind} "{ref.get("name", "")}" not found')
                data = object_data(obj)
                if ref.get("key") not in data:
                    if ref.get("optional"):
                        break
                    raise EnvError(f"couldn't find key {ref.get('key')} in {title} {ns}/{ref.get('name', '')}")
                env[name] = data[ref["key"]].decode(errors="replace")
                break
    return env


def env_references(pod: dict, container: dict) -> set[tuple[str, str]]:
    """The (plural, name) ConfigMaps and Secrets a container's env and envFrom name."""
    refs = set()
    for src in container.get("envFrom") or []:
        if (src.get("configMapRef") or {}).get("name"):
            refs.add(("configmaps", src["configMapRef"]["name"]))
        if (src.get("secretRef") or {}).get("name"):
            refs.add(("secrets", src["secretRef"]["name"]))
    for e in container.get("env") or []:
        vf = e.get("valueFrom") or {}
        if (vf.get("configMapKeyRef") or {}).get("name"):
            refs.add(("configmaps", vf["configMapKeyRef"]["name"]))
        if (vf.get("secretKeyRef") or {}).get("name"):
            refs.add(("secrets", vf["secretKeyRef"]["name"]))
    return refs
