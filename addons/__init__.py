"""Cluster add-ons: programs that run beside the control plane and node agents
and talk to the apiserver like any client (upstream's cluster/addons, e.g. CoreDNS)."""
