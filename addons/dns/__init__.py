"""Cluster DNS: answers ``<svc>.<ns>.svc.<domain>`` and friends from Services and
EndpointSlices, forwards every other name upstream.

Mirrors CoreDNS with the default kubeadm Corefile (``kubernetes cluster.local
in-addr.arpa ip6.arpa { pods insecure; fallthrough in-addr.arpa ip6.arpa }``,
``forward . /etc/resolv.conf``, ``prometheus :9153``, ``health``) and the
Kubernetes DNS-Based Service Discovery specification (kubernetes/dns
docs/specification.md). Modules: ``kubernetes`` (names -> records),
``forward`` (upstream resolvers), ``server`` (UDP/TCP serving and the wire
response cache), ``register`` (the kube-dns Service and its endpoints),
``metrics`` (CoreDNS's metric names), ``__main__`` (flags).
"""
