"""The iptables proxy mode: rule rendering (rules), the tool runner (runner)
and the Proxier that ties them to Services and Endpoints (proxier)."""
