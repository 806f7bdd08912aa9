"""The CRI v1 shim over Docker (kubeling's dockershim).

Serves runtime.v1 RuntimeService and ImageService on a unix socket and maps
them to Docker Engine API calls and CNI plugin runs, like the dockershim that
lived in kubernetes/kubernetes pkg/kubelet/dockershim until 1.24.
Start it with ``python -m kubelet.dockershim --listen unix:///PATH/cri.sock ...``.
"""
