"""The kubelet-managed /etc/hosts (kubelet/etc_hosts.py) and its mount in container configs."""
from kubelet.etc_hosts import ensure_hosts_file, hosts_content, mounts_hosts
from kubelet.kuberuntime import KubeRuntimeManager
from kubelet.volumemanager import Volume


def pod(**spec):
    return {"metadata": {"name": "web-0", "namespace": "shop", "uid": "u1"},
            "spec": {"containers": [{"name": "app", "image": "busybox:1.35"}], **spec}}


def test_managed_content_as_upstream():
    text = hosts_content(pod(), ["10.244.0.7"], cluster_domain="cluster.local")
    lines = text.splitlines()
    assert lines[0] == "# Kubernetes-managed hosts file."
    assert "127.0.0.1\tlocalhost" in lines and "::1\tlocalhost ip6-localhost ip6-loopback" in lines
    assert lines[-1] == "10.244.0.7\tweb-0"


def test_hostname_subdomain_and_aliases():
    p = pod(hostname="db", subdomain="cache",
            hostAliases=[{"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]}])
    lines = hosts_content(p, ["10.244.0.7"], cluster_domain="cluster.local").splitlines()
    assert "10.244.0.7\tdb.cache.shop.svc.cluster.local\tdb" in lines
    assert lines[-2:] == ["# Entries added by HostAliases.", "10.1.2.3\tfoo.local\tbar.local"]


def test_host_network_pod_gets_the_node_file_and_aliases():
    p = pod(hostNetwork=True, hostAliases=[{"ip": "10.1.2.3", "hostnames": ["foo"]}])
    text = hosts_content(p, ["192.168.1.5"], cluster_domain="cluster.local", node_hosts="127.0.0.1 node1")
    assert text.startswith("127.0.0.1 node1\n") and "Kubernetes-managed" not in text
    assert text.endswith("10.1.2.3\tfoo\n")


def test_ensure_rewrites_in_place(tmp_path):
    path = ensure_hosts_file(str(tmp_path / "u1"), pod(), ["10.244.0.7"], cluster_domain="cluster.local")
    inode = (tmp_path / "u1" / "etc-hosts").stat().st_ino
    ensure_hosts_file(str(tmp_path / "u1"), pod(), ["10.244.0.9"], cluster_domain="cluster.local")
    assert (tmp_path / "u1" / "etc-hosts").stat().st_ino == inode  # a running container's bind mount sees it
    assert open(path).read().endswith("10.244.0.9\tweb-0\n")


def test_container_config_mounts_it_unless_the_container_mounts_etc_hosts(tmp_path):
    mgr = KubeRuntimeManager(None, root_dir=str(tmp_path), node_ip="127.0.0.1", recorder=lambda *a: None)
    p = pod()
    hosts = mgr.hosts_file(p, pod_ip="10.244.0.7")
    cfg = mgr.container_config(p, p["spec"]["containers"][0], 0, pod_ip="10.244.0.7", hosts_file=hosts)
    [m] = [m for m in cfg.mounts if m.container_path == "/etc/hosts"]
    assert m.host_path == str(tmp_path / "pods" / "u1" / "etc-hosts")
    assert "10.244.0.7\tweb-0" in open(m.host_path).read()
    own = {"name": "app", "image": "busybox:1.35", "volumeMounts": [{"name": "h", "mountPath": "/etc/hosts/"}]}
    assert mounts_hosts(own)
    mine = mgr.container_config(p, own, 0, pod_ip="10.244.0.7", hosts_file=hosts,
                                volumes={"h": Volume(str(tmp_path / "own-hosts"))})
    assert [m.host_path for m in mine.mounts] == [str(tmp_path / "own-hosts")]  # its own, not the managed one
    assert mgr.hosts_file(p, pod_ip="") == ""  # no IP yet: nothing to mount
