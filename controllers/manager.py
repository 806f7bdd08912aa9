"""The controller manager: one process running every controller over
shared informers.

Mirrors cmd/kube-controller-manager (app/controllermanager.go): one informer
per resource is shared by all controllers that need it (the
SharedInformerFactory), started once every controller has registered its
handlers; each controller waits for its caches before its workers start.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from kubeling.api import resources as res
from kubeling.client import Client, Informer
from kubeling.client.record import EventRecorder
from controllers.bootstrapsigner import BootstrapSigner
from controllers.certificates.approver import CSRApprovingController
from controllers.certificates.cleaner import CSRCleanerController
from controllers.certificates.signer import CA, DEFAULT_DURATION as SIGNING_DURATION, CSRSigningController
from controllers.controller_utils import BaseController
from controllers.cronjob import CronJobController
from controllers.daemonset import DaemonSetsController
from controllers.deployment import DeploymentController
from controllers.endpoints import EndpointsController
from controllers.endpointslice import EndpointSliceController
from controllers.garbagecollector import GarbageCollector
from controllers.job import JobController
from controllers.namespace import NamespaceController
from controllers.nodeipam import NodeIpamController
from controllers.nodelifecycle import (NODE_MONITOR_GRACE_PERIOD, NODE_MONITOR_PERIOD, NODE_STARTUP_GRACE_PERIOD,
                                      NodeLifecycleController)
from controllers.podgc import TERMINATED_POD_GC_THRESHOLD, PodGCController
from controllers.statefulset import StatefulSetController
from controllers.rootcacertpublisher import RootCACertPublisher
from controllers.serviceaccount import ServiceAccountsController
from controllers.tokencleaner import TokenCleaner
from controllers.ttlafterfinished import TTLAfterFinishedController
from controllers.replicaset import ReplicaSetController, ReplicationManager
from controllers.resourcequota import REPLENISHED, RESOURCE_QUOTA_SYNC_PERIOD, ResourceQuotaController

log = logging.getLogger(__name__)

# Controllers run by default (upstream's --controllers "*"); nodeipam also needs --allocate-node-cidrs.
ALL_CONTROLLERS = ("deployment", "replicaset", "replicationcontroller", "daemonset", "statefulset", "job",
                   "cronjob", "ttl-after-finished", "endpoints", "endpointslice", "serviceaccount",
                   "garbagecollector", "podgc", "namespace", "nodeipam", "nodelifecycle", "resourcequota",
                   "root-ca-cert-publisher", "csrapproving", "csrsigning", "csrcleaner", "tokencleaner", "bootstrapsigner")
WORKERS = {"deployment": 3, "replicaset": 3, "replicationcontroller": 2, "daemonset": 2, "statefulset": 2,
           "job": 3, "cronjob": 1, "ttl-after-finished": 1, "endpoints": 3, "endpointslice": 3,
           "serviceaccount": 1, "garbagecollector": 5, "namespace": 2, "nodeipam": 1, "nodelifecycle": 2,
           "resourcequota": 2, "root-ca-cert-publisher": 1, "csrapproving": 1, "csrsigning": 1,
           "csrcleaner": 1, "tokencleaner": 1, "bootstrapsigner": 1}


class InformerFactory:
    """One Informer per resource, shared (client-go's SharedInformerFactory)."""

    def __init__(self, client: Client):
        self.client = client
        self.informers: dict[str, Informer] = {}

    def informer(self, plural: str) -> Informer:
        """The shared informer of ``plural`` (created on first use)."""
        if plural not in self.informers:
            self.informers[plural] = Informer(self.client, plural)
        return self.informers[plural]

    async def run(self) -> None:
        """Run every informer created so far until cancelled."""
        await asyncio.gather(*(inf.run() for inf in self.informers.values()))

    def synced(self) -> bool:
        """All informers have listed once."""
        return all(inf.has_synced for inf in self.informers.values())


def gc_monitored_resources() -> list[res.Resource]:
    """What the garbage collector watches: every served resource but events (upstream's GC
    ignores them too: they are many and never own anything)."""
    seen, out = set(), []
    for r in res.RESOURCES:
        if r.plural != "events" and r.plural not in seen:
            seen.add(r.plural)
            out.append(r)
    return out


def enabled_controllers(spec: str) -> list[str]:
    """Names from a --controllers value: ``*`` (all), ``foo`` (enable), ``-foo`` (disable).
    Raises ValueError for an unknown name."""
    items = [s.strip() for s in spec.split(",") if s.strip()] or ["*"]
    for item in items:
        name = item.lstrip("-")
        if name != "*" and name not in ALL_CONTROLLERS:
            raise ValueError(f"unknown controller {name!r} (known: {', '.join(ALL_CONTROLLERS)})")
    wanted = set(ALL_CONTROLLERS) if "*" in items else set()
    wanted |= {i for i in items if not i.startswith("-") and i != "*"}
    wanted -= {i[1:] for i in items if i.startswith("-")}
    return [c for c in ALL_CONTROLLERS if c in wanted]


def build_controllers(client: Client, factory: InformerFactory, names: list[str], *,
                      allocate_node_cidrs: bool = False, cluster_cidr: str = "",
                      node_cidr_mask_size: int = 24, node_monitor_period: float = NODE_MONITOR_PERIOD,
                      node_monitor_grace_period: float = NODE_MONITOR_GRACE_PERIOD,
                      node_startup_grace_period: float = NODE_STARTUP_GRACE_PERIOD,
                      terminated_pod_gc_threshold: int = TERMINATED_POD_GC_THRESHOLD,
                      resource_quota_sync_period: float = RESOURCE_QUOTA_SYNC_PERIOD,
                      root_ca: str = "", cluster_signing_cert_file: str = "", cluster_signing_key_file: str = "",
                      cluster_signing_duration: float = SIGNING_DURATION) -> list[BaseController]:
    """Construct the named controllers over ``factory``'s shared informers.
    Raises ValueError for a bad --cluster-cidr / --node-cidr-mask-size or unreadable signing files."""
    inf: Callable[[str], Informer] = factory.informer
    out: list[BaseController] = []
    for name in names:
        if name == "deployment":
            out.append(DeploymentController(client, inf("deployments"), inf("replicasets"), inf("pods"),
                                            recorder=EventRecorder(client, "deployment-controller")))
        elif name == "replicaset":
            out.append(ReplicaSetController(client, inf("replicasets"), inf("pods"),
                                            recorder=EventRecorder(client, "replicaset-controller")))
        elif name == "replicationcontroller":
            out.append(ReplicationManager(client, inf("replicationcontrollers"), inf("pods"),
                                          recorder=EventRecorder(client, "replication-controller")))
        elif name == "daemonset":
            out.append(DaemonSetsController(client, inf("daemonsets"), inf("pods"), inf("nodes"),
                                            recorder=EventRecorder(client, "daemonset-controller")))
        elif name == "statefulset":
            out.append(StatefulSetController(client, inf("statefulsets"), inf("pods"),
                                             recorder=EventRecorder(client, "statefulset-controller")))
        elif name == "job":
            out.append(JobController(client, inf("jobs"), inf("pods"),
                                     recorder=EventRecorder(client, "job-controller")))
        elif name == "cronjob":
            out.append(CronJobController(client, inf("cronjobs"), inf("jobs"),
                                         recorder=EventRecorder(client, "cronjob-controller")))
        elif name == "ttl-after-finished":
            out.append(TTLAfterFinishedController(client, inf("jobs")))
        elif name == "serviceaccount":
            out.append(ServiceAccountsController(client, inf("namespaces"), inf("serviceaccounts")))
        elif name == "podgc":
            out.append(PodGCController(client, inf("pods"), inf("nodes"), threshold=terminated_pod_gc_threshold))
        elif name == "endpoints":
            out.append(EndpointsController(client, inf("services"), inf("pods"), inf("endpoints")))
        elif name == "endpointslice":
            out.append(EndpointSliceController(client, inf("services"), inf("pods"), inf("endpointslices")))
        elif name == "garbagecollector":
            out.append(GarbageCollector(client, {r.plural: inf(r.plural) for r in gc_monitored_resources()}))
        elif name == "namespace":
            out.append(NamespaceController(client, inf("namespaces")))
        elif name == "nodelifecycle":
            out.append(NodeLifecycleController(client, inf("nodes"), inf("leases"), inf("pods"),
                                               recorder=EventRecorder(client, "node-controller"),
                                               monitor_period=node_monitor_period,
                                               grace_period=node_monitor_grace_period,
                                               startup_grace_period=node_startup_grace_period))
        elif name == "resourcequota":
            out.append(ResourceQuotaController(client, inf("resourcequotas"), {p: inf(p) for p in REPLENISHED},
                                               sync_period=resource_quota_sync_period))
        elif name == "root-ca-cert-publisher":
            if not root_ca:
                log.info("root-ca-cert-publisher: no --root-ca-file, not publishing kube-root-ca.crt")
                continue
            out.append(RootCACertPublisher(client, inf("namespaces"), inf("configmaps"), root_ca=root_ca))
        elif name == "csrapproving":
            out.append(CSRApprovingController(client, inf("certificatesigningrequests")))
        elif name == "csrcleaner":
            out.append(CSRCleanerController(client, inf("certificatesigningrequests")))
        elif name == "tokencleaner":
            out.append(TokenCleaner(client, inf("secrets")))
        elif name == "bootstrapsigner":
            out.append(BootstrapSigner(client, inf("configmaps"), inf("secrets")))
        elif name == "csrsigning":
            if not (cluster_signing_cert_file and cluster_signing_key_file):
                log.info("csrsigning: no --cluster-signing-cert-file/--cluster-signing-key-file, not signing")
                continue
            try:
                ca = CA(cluster_signing_cert_file, cluster_signing_key_file)
            except (OSError, ValueError, TypeError) as e:
                raise ValueError(f"csrsigning: cannot load the signing CA: {e}") from None
            out.append(CSRSigningController(client, inf("certificatesigningrequests"), ca=ca,
                                            duration=cluster_signing_duration))
        elif name == "nodeipam":
            if not allocate_node_cidrs:
                log.info("nodeipam: --allocate-node-cidrs not set, not allocating pod CIDRs")
                continue
            out.append(NodeIpamController(client, inf("nodes"), cluster_cidr=cluster_cidr,
                                          node_cidr_mask_size=node_cidr_mask_size))
    return out


class ControllerManager:
    """Runs the controllers and their informers; ``ready`` once all caches synced."""

    def __init__(self, client: Client, controllers: list[BaseController], factory: InformerFactory):
        self.client = client
        self.controllers = controllers
        self.factory = factory

    @property
    def ready(self) -> bool:
        """True once every informer of the shared factory has synced (backs /readyz)."""
        return self.factory.synced()

    async def run(self) -> None:
        """Run informers and controllers until cancelled."""
        tasks = [asyncio.ensure_future(self.factory.run())]
        tasks += [asyncio.ensure_future(c.run(workers=WORKERS.get(c.name, 1))) for c in self.controllers]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
