"""The node agent (kubelet): runs the pods bound to its node through a CRI runtime.

Modules, each named after its upstream counterpart: kubelet (main loop and
pod sync), nodestatus (Node registration, heartbeat, Lease), pod_workers,
pleg, kuberuntime (computePodActions / SyncPod over CRI), pod_status
(phase and conditions), status_manager, prober, events, logs, server
(the kubelet HTTP API), network (bridge and safety routes), cri (the CRI
client). dockershim/ is the CRI server over Docker, a separate process.
"""
