"""The registries of every served resource (one Strategy per kind, run by the generic Store).

``served_strategies`` is the one list the apiserver builds its Stores, and
so its discovery documents, from (as pkg/controlplane's RESTStorageProviders).
"""
from __future__ import annotations


def store_class(strategy):
    """The Store class serving ``strategy``: the generic Store, or EventsV1Store for events.k8s.io/v1
    (which converts to and from the core Event form kept in etcd), CertificateSigningRequestStore for CSRs."""
    from apiserver.registry import certificates, events
    from apiserver.registry.store import Store
    if isinstance(strategy, certificates.CertificateSigningRequestStrategy):
        return certificates.CertificateSigningRequestStore
    return events.EventsV1Store if isinstance(strategy, events.EventsV1Strategy) else Store


def served_strategies(ip_range) -> list:
    """One Strategy instance per served resource except namespaces (which have their own Store);
    ``ip_range`` is the Service ClusterIP ipallocator.Range."""
    from apiserver.registry import (apps, batch, certificates, core, discovery_k8s, events, rbac,
                                    replicationcontroller, scheduling)
    return [core.PodStrategy(), core.NodeStrategy(), core.ServiceStrategy(ip_range),
            core.EndpointsStrategy(), core.EventStrategy(), core.ConfigMapStrategy(), core.SecretStrategy(),
            core.ServiceAccountStrategy(), replicationcontroller.ReplicationControllerStrategy(),
            core.ResourceQuotaStrategy(), core.LimitRangeStrategy(),
            apps.DeploymentStrategy(), apps.ReplicaSetStrategy(), apps.DaemonSetStrategy(),
            apps.StatefulSetStrategy(), batch.JobStrategy(), batch.CronJobStrategy(), apps.LeaseStrategy(),
            discovery_k8s.EndpointSliceStrategy(), rbac.RoleStrategy(), rbac.RoleBindingStrategy(),
            rbac.ClusterRoleStrategy(), rbac.ClusterRoleBindingStrategy(), events.EventsV1Strategy(),
            certificates.CertificateSigningRequestStrategy(), scheduling.PriorityClassStrategy()]
