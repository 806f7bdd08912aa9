"""The etcd v3 gRPC API of etcdlite: KV, Watch, Lease, Cluster, Maintenance."""
