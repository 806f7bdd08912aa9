"""kubeling's kube-scheduler: assigns pending pods to nodes (``python -m scheduler``)."""
