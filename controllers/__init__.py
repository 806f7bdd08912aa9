"""kubeling's kube-controller-manager: the controllers that drive objects to
their desired state (``python -m controllers``)."""
