"""The kubelet's certificates (upstream pkg/kubelet/certificate): TLS bootstrap of its client certificate."""
