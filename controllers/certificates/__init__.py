"""The certificates controllers of the kube-controller-manager (upstream ``pkg/controller/certificates``).

``approver`` (csrapproving) auto-approves kubelet client certificate
requests that the requester is authorized to make; ``signer``
(csrsigning) issues the certificates of approved requests with the
cluster CA. Both are keyed by CSR name over the shared CSR informer.
"""
