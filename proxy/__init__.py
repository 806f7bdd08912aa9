"""kube-proxy for kubeling: watches Services and Endpoints and programs iptables
so that traffic to a Service's cluster IP reaches one of its pods
(upstream's kube-proxy in iptables mode). Start with ``python -m proxy``."""
