"""The etcd server of one member: log proposals, apply, reads, leases."""
