"""The PodSecurity admission plugin: the Pod Security Standards enforced per namespace label.

Mirrors k8s.io/pod-security-admission: a namespace labelled
``pod-security.kubernetes.io/enforce: baseline`` (or ``restricted``) refuses
pods that break that level, with upstream's message ``pods "x" is
forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation
!= false (container "app" must set securityContext.allowPrivilegeEscalation=false),
...`` (checks reported in the order of their IDs; a restricted check replaces
its baseline counterpart). ``privileged`` or no label allows everything, as
upstream's default. ``pod-security.kubernetes.io/enforce-version`` only
changes the version shown in the message (kubeling applies the latest
standards). The ``audit`` and ``warn`` modes, the exemptions of the
admission configuration file and checks of workload templates are not done.

Checks: hostNamespaces, privileged, capabilities, hostPathVolumes,
hostPorts, hostProcess, procMount, seLinuxOptions, seccompProfile,
sysctls (baseline); restrictedVolumes, allowPrivilegeEscalation,
runAsNonRoot, runAsUser, seccompProfile, capabilities (restricted).
"""
from __future__ import annotations

from typing import Awaitable, Callable, Iterable

from apiserver.admission import Attributes, forbidden, resource_name

ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
ENFORCE_VERSION_LABEL = "pod-security.kubernetes.io/enforce-version"
LEVELS = ("privileged", "baseline", "restricted")

BASELINE_CAPABILITIES = frozenset({"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                                   "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})
RESTRICTED_VOLUME_TYPES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                                     "persistentVolumeClaim", "projected", "secret"})
SAFE_SYSCTLS = frozenset({"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                          "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                          "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                          "net.ipv4.tcp_keepalive_probes"})
VOLUME_SOURCE_KEYS = ("hostPath", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "nfs", "iscsi",
                      "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder", "cephfs", "flocker",
                      "fc", "azureFile", "vsphereVolume", "quobyte", "azureDisk", "portworxVolume", "scaleIO",
                      "storageos", "photonPersistentDisk", "configMap", "csi", "downwardAPI", "emptyDir",
                      "ephemeral", "projected", "secret")

Check = tuple[str, str, str]  # (check ID, reason, detail)


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _containers_phrase(names: list[str]) -> str:
    return f'container {_quoted(names)}' if len(names) == 1 else f"containers {_quoted(names)}"


def _all_containers(spec: dict) -> list[dict]:
    return [c for f in ("initContainers", "containers", "ephemeralContainers") for c in spec.get(f) or []
            if isinstance(c, dict)]


def _sc(obj: dict) -> dict:
    sc = obj.get("securityContext")
    return sc if isinstance(sc, dict) else {}


def _baseline(spec: dict) -> list[Check]:
    out: list[Check] = []
    containers = _all_containers(spec)
    pod_sc = _sc(spec)
    hosts = [f"{k}=true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k) is True]
    if hosts:
        out.append(("hostNamespaces", "host namespaces", ", ".join(hosts)))
    priv = [c.get("name", "") for c in containers if _sc(c).get("privileged") is True]
    if priv:
        out.append(("privileged", "privileged", f"{_containers_phrase(priv)} must not set "
                                                f"securityContext.privileged=true"))
    caps = []
    for c in containers:
        added = [a for a in ((_sc(c).get("capabilities") or {}).get("add") or []) if a not in BASELINE_CAPABILITIES]
        if added:
            caps.append(f'{_containers_phrase([c.get("name", "")])} must not include {_quoted(added)} in '
                        f"securityContext.capabilities.add")
    if caps:
        out.append(("capabilities_baseline", "non-default capabilities", "; ".join(caps)))
    host_paths = [v.get("name", "") for v in spec.get("volumes") or [] if isinstance(v, dict) and "hostPath" in v]
    if host_paths:
        out.append(("hostPathVolumes", "hostPath volumes",
                    f"volume {_quoted(host_paths)}" if len(host_paths) == 1 else f"volumes {_quoted(host_paths)}"))
    port_users, ports = [], []
    for c in containers:
        mine = [str(p["hostPort"]) for p in c.get("ports") or [] if isinstance(p, dict) and p.get("hostPort")]
        if mine:
            port_users.append(c.get("name", ""))
            ports += mine
    if ports:
        verb = "uses" if len(port_users) == 1 else "use"
        out.append(("hostPorts", "hostPort", f"{_containers_phrase(port_users)} {verb} "
                                             f"{'hostPort' if len(ports) == 1 else 'hostPorts'} {', '.join(ports)}"))
    win = [c.get("name", "") for c in containers
           if (_sc(c).get("windowsOptions") or {}).get("hostProcess") is True]
    if win or (pod_sc.get("windowsOptions") or {}).get("hostProcess") is True:
        out.append(("hostProcess", "hostProcess", "pod or containers must not set "
                                                  "securityContext.windowsOptions.hostProcess=true"))
    proc = [c.get("name", "") for c in containers if _sc(c).get("procMount") not in (None, "", "Default")]
    if proc:
        out.append(("procMount", "procMount", f"{_containers_phrase(proc)} must not set securityContext.procMount"))
    selinux = [c.get("name", "") for c in containers if (_sc(c).get("seLinuxOptions") or {}).get("user")
               or (_sc(c).get("seLinuxOptions") or {}).get("role")]
    if selinux:
        out.append(("seLinuxOptions", "seLinuxOptions", f"{_containers_phrase(selinux)} set forbidden "
                                                        f"securityContext.seLinuxOptions"))
    unconfined = []
    if (pod_sc.get("seccompProfile") or {}).get("type") == "Unconfined":
        unconfined.append('pod must not set securityContext.seccompProfile.type to "Unconfined"')
    bad = [c.get("name", "") for c in containers if (_sc(c).get("seccompProfile") or {}).get("type") == "Unconfined"]
    if bad:
        unconfined.append(f'{_containers_phrase(bad)} must not set securityContext.seccompProfile.type to '
                          f'"Unconfined"')
    if unconfined:
        out.append(("seccompProfile_baseline", "seccompProfile", "; ".join(unconfined)))
    sysctls = [s.get("name", "") for s in pod_sc.get("sysctls") or [] if isinstance(s, dict)
               and s.get("name") not in SAFE_SYSCTLS]
    if sysctls:
        out.append(("sysctls", "forbidden sysctls", ", ".join(sysctls)))
    return out


def _restricted(spec: dict) -> list[Check]:
    out: list[Check] = []
    containers = _all_containers(spec)
    pod_sc = _sc(spec)
    restricted_vols = []
    for v in spec.get("volumes") or []:
        if not isinstance(v, dict):
            continue
        kind = next((k for k in VOLUME_SOURCE_KEYS if k in v), None)
        if kind is not None and kind not in RESTRICTED_VOLUME_TYPES:
            restricted_vols.append(f'volume "{v.get("name", "")}" uses restricted volume type "{kind}"')
    if restricted_vols:
        out.append(("restrictedVolumes", "restricted volume types", ", ".join(restricted_vols)))
    ape = [c.get("name", "") for c in containers if _sc(c).get("allowPrivilegeEscalation") is not False]
    if ape:
        out.append(("allowPrivilegeEscalation", "allowPrivilegeEscalation != false",
                    f"{_containers_phrase(ape)} must set securityContext.allowPrivilegeEscalation=false"))
    pod_nonroot = pod_sc.get("runAsNonRoot")
    details = []
    if pod_nonroot is False:
        details.append("pod must not set securityContext.runAsNonRoot=false")
    explicit_false = [c.get("name", "") for c in containers if _sc(c).get("runAsNonRoot") is False]
    if explicit_false:
        details.append(f"{_containers_phrase(explicit_false)} must not set securityContext.runAsNonRoot=false")
    if pod_nonroot is not True:
        unset = [c.get("name", "") for c in containers if _sc(c).get("runAsNonRoot") is None]
        if unset:
            details.append(f"pod or {_containers_phrase(unset)} must set securityContext.runAsNonRoot=true")
    if details:
        out.append(("runAsNonRoot", "runAsNonRoot != true", "; ".join(details)))
    root = []
    if pod_sc.get("runAsUser") == 0:
        root.append("pod must not set runAsUser=0")
    root_containers = [c.get("name", "") for c in containers if _sc(c).get("runAsUser") == 0]
    if root_containers:
        root.append(f"{_containers_phrase(root_containers)} must not set runAsUser=0")
    if root:
        out.append(("runAsUser", "runAsUser=0", "; ".join(root)))
    seccomp_ok = ("RuntimeDefault", "Localhost")
    pod_type = (pod_sc.get("seccompProfile") or {}).get("type")
    seccomp = []
    if pod_type is not None and pod_type not in seccomp_ok:
        seccomp.append(f'pod must not set securityContext.seccompProfile.type to "{pod_type}"')
    for c in containers:
        ctype = (_sc(c).get("seccompProfile") or {}).get("type")
        if ctype is not None and ctype not in seccomp_ok:
            seccomp.append(f'{_containers_phrase([c.get("name", "")])} must not set '
                           f'securityContext.seccompProfile.type to "{ctype}"')
    if pod_type is None:
        unset = [c.get("name", "") for c in containers if (_sc(c).get("seccompProfile") or {}).get("type") is None]
        if unset:
            seccomp.append(f'pod or {_containers_phrase(unset)} must set securityContext.seccompProfile.type to '
                           f'"RuntimeDefault" or "Localhost"')
    if seccomp:
        out.append(("seccompProfile_restricted", "seccompProfile", "; ".join(seccomp)))
    no_drop, bad_add = [], []
    for c in containers:
        caps = _sc(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            no_drop.append(c.get("name", ""))
        added = [a for a in caps.get("add") or [] if a != "NET_BIND_SERVICE"]
        if added:
            bad_add.append(f'{_containers_phrase([c.get("name", "")])} must not include {_quoted(added)} in '
                           f"securityContext.capabilities.add")
    caps_details = []
    if no_drop:
        caps_details.append(f'{_containers_phrase(no_drop)} must set securityContext.capabilities.drop=["ALL"]')
    caps_details += bad_add
    if caps_details:
        out.append(("capabilities_restricted", "unrestricted capabilities", "; ".join(caps_details)))
    return out


# Restricted checks that replace baseline ones (upstream's OverrideCheckIDs).
OVERRIDES = {"capabilities_restricted": "capabilities_baseline", "seccompProfile_restricted": "seccompProfile_baseline",
             "restrictedVolumes": "hostPathVolumes"}


def evaluate(level: str, pod: dict) -> list[Check]:
    """The failed checks of ``pod`` at ``level`` (privileged / baseline / restricted), ordered by check ID."""
    spec = pod.get("spec") or {}
    if level == "privileged":
        return []
    checks = _baseline(spec)
    if level == "restricted":
        restricted = _restricted(spec)
        replaced = {OVERRIDES[c[0]] for c in restricted if c[0] in OVERRIDES} | set(OVERRIDES.values())
        checks = [c for c in checks if c[0] not in replaced] + restricted
    return sorted(checks, key=lambda c: c[0])


class PodSecurity:
    """Admission plugin enforcing the namespace's ``pod-security.kubernetes.io/enforce`` level on pod creates."""

    name = "PodSecurity"

    def __init__(self, namespace_getter: Callable[[str], Awaitable[dict | None]]):
        self.namespace_getter = namespace_getter

    async def admit(self, attrs: Attributes, obj: dict | None, old: dict | None) -> None:
        """Refuse a pod create breaking the namespace's enforced level."""
        if resource_name(attrs) != "pods" or attrs.operation != "create" or attrs.subresource or obj is None \
                or not attrs.namespace:
            return
        ns = await self.namespace_getter(attrs.namespace)
        labels = ((ns or {}).get("metadata") or {}).get("labels") or {}
        level = labels.get(ENFORCE_LABEL, "privileged")
        if level not in LEVELS:
            level = "restricted"  # an invalid level is enforced as restricted, as upstream
        failed = evaluate(level, obj)
        if failed:
            version = labels.get(ENFORCE_VERSION_LABEL) or "latest"
            raise forbidden(attrs, f'violates PodSecurity "{level}:{version}": '
                                   + ", ".join(f"{reason} ({detail})" for _, reason, detail in failed))
