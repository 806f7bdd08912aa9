"""computePodActions and container config helpers, on hand-made runtime states."""
import pytest

from kubelet.container import ContainerStatus, PodStatus, SandboxStatus, container_hash
from kubelet.envvars import EnvError, container_env, expand
from kubelet.kuberuntime import compute_pod_actions, pod_grace_period


def pod(containers=("app",), init=(), policy="Always"):
    spec = {"containers": [{"name": n, "image": "busybox:1.35"} for n in containers], "restartPolicy": policy}
    if init:
        spec["initContainers"] = [{"name": n, "image": "busybox:1.35"} for n in init]
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u1"}, "spec": spec}


def status(*containers, ready=True, sandbox=True):
    sbs = [SandboxStatus("s1", ready, 0, 1.0, "10.244.0.2")] if sandbox else []
    return PodStatus("u1", sandboxes=sbs, containers=list(containers))


def c(name, state, code=0, cid=None, spec=None):
    return ContainerStatus(cid or f"id-{name}", name, state, exit_code=code,
                           hash=container_hash(spec) if spec else "")


def names(actions):
    return [x["name"] for x in actions.containers_to_start]


def test_new_pod_creates_sandbox_and_starts_all():
    a = compute_pod_actions(pod(("a", "b")), status(sandbox=False))
    assert a.create_sandbox and a.attempt == 0 and names(a) == ["a", "b"]


def test_new_pod_with_init_starts_first_init_only():
    a = compute_pod_actions(pod(init=("i1", "i2")), status(sandbox=False))
    assert a.create_sandbox and a.next_init["name"] == "i1" and not a.containers_to_start


def test_init_containers_in_order():
    p = pod(init=("i1", "i2"))
    assert compute_pod_actions(p, status(c("i1", "running"))).next_init is None
    assert compute_pod_actions(p, status(c("i1", "exited", 0))).next_init["name"] == "i2"
    a = compute_pod_actions(p, status(c("i1", "exited", 0), c("i2", "exited", 0)))
    assert a.next_init is None and names(a) == ["app"]


def test_failed_init_retried_unless_never():
    assert compute_pod_actions(pod(init=("i1",)), status(c("i1", "exited", 1))).next_init["name"] == "i1"
    a = compute_pod_actions(pod(init=("i1",), policy="Never"), status(c("i1", "exited", 1)))
    assert a.init_failed and a.kill_pod and a.next_init is None


def test_dead_sandbox_is_recreated_with_next_attempt():
    a = compute_pod_actions(pod(), status(c("app", "running"), ready=False))
    assert a.kill_pod and a.create_sandbox and a.attempt == 1


def test_restart_policy_decides_restarts():
    assert names(compute_pod_actions(pod(policy="Always"), status(c("app", "exited", 0)))) == ["app"]
    assert names(compute_pod_actions(pod(policy="OnFailure"), status(c("app", "exited", 1)))) == ["app"]
    a = compute_pod_actions(pod(policy="OnFailure"), status(c("app", "exited", 0)))
    assert not a.containers_to_start and a.kill_pod  # done: stop the sandbox
    a = compute_pod_actions(pod(policy="Never"), status(c("app", "exited", 1)))
    assert not a.containers_to_start and a.kill_pod


def test_running_container_is_kept():
    p = pod()
    a = compute_pod_actions(p, status(c("app", "running", spec=p["spec"]["containers"][0])))
    assert not a.kill_pod and not a.containers_to_start and not a.containers_to_kill


def test_liveness_failure_restarts_container():
    p = pod()
    a = compute_pod_actions(p, status(c("app", "running", cid="c9")),
                            liveness_failed=lambda name, cid: cid == "c9")
    assert "c9" in a.containers_to_kill and names(a) == ["app"]
    assert "liveness" in a.containers_to_kill["c9"][1]


def test_changed_spec_restarts_container():
    p = pod()
    old_spec = dict(p["spec"]["containers"][0], image="busybox:1.34")
    a = compute_pod_actions(p, status(c("app", "running", cid="c1", spec=old_spec)))
    assert "c1" in a.containers_to_kill and names(a) == ["app"]


def test_env_and_expansion():
    p = pod()
    ctr = {"name": "app", "env": [{"name": "A", "value": "x"}, {"name": "B", "value": "$(A)-y"},
                                  {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                  {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}
    secret = {"kind": "Secret", "data": {"k": "c2VjcmV0"}}
    env = container_env(p, ctr, pod_ip="10.0.0.1", node_ip="127.0.0.1", sources={("secrets", "s"): secret})
    assert env == {"A": "x", "B": "x-y", "N": "p", "S": "secret"}
    with pytest.raises(EnvError, match='secret "s" not found'):
        container_env(p, ctr, pod_ip="10.0.0.1", node_ip="127.0.0.1")
    assert expand("echo $(A) $(MISSING) $$(A)", env) == "echo x $(MISSING) $(A)"


def test_grace_period():
    p = pod()
    assert pod_grace_period(p) == 30
    p["spec"]["terminationGracePeriodSeconds"] = 5
    assert pod_grace_period(p) == 5
    p["metadata"]["deletionGracePeriodSeconds"] = 0
    assert pod_grace_period(p) == 0


def test_dns_config_per_policy():
    from kubelet.kuberuntime import dns_config
    p = pod()
    p["metadata"]["namespace"] = "shop"
    d = dns_config(p, cluster_dns=["10.96.0.10"], cluster_domain="cluster.local")
    assert list(d.servers) == ["10.96.0.10"] and list(d.options) == ["ndots:5"]
    assert list(d.searches) == ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local"]
    assert not dns_config(p, cluster_dns=[], cluster_domain="cluster.local").servers
    p["spec"]["hostNetwork"] = True
    assert not dns_config(p, cluster_dns=["10.96.0.10"], cluster_domain="cluster.local").servers
    p["spec"].update(dnsPolicy="None", dnsConfig={"nameservers": ["127.0.0.53"], "options": [{"name": "edns0"}]})
    d = dns_config(p, cluster_dns=["10.96.0.10"], cluster_domain="cluster.local")
    assert list(d.servers) == ["127.0.0.53"] and list(d.options) == ["edns0"]


def test_namespaces_for_pod_gives_each_container_its_own_pid_namespace():
    """As upstream's namespacesForPod: PID is per container unless shareProcessNamespace / hostPID,
    so ``/proc/1`` is the container's own command (its stdout is the container log)."""
    from kubelet.kuberuntime import namespaces_for_pod
    from proto.cri import api_pb2 as pb
    p = pod()
    ns = namespaces_for_pod(p)
    assert (ns.network, ns.ipc, ns.pid) == (pb.POD, pb.POD, pb.CONTAINER)
    p["spec"]["shareProcessNamespace"] = True
    assert namespaces_for_pod(p).pid == pb.POD
    p["spec"].update(hostPID=True, hostNetwork=True, hostIPC=True)
    ns = namespaces_for_pod(p)
    assert (ns.network, ns.ipc, ns.pid) == (pb.NODE, pb.NODE, pb.NODE)


def test_container_config_carries_the_pod_namespaces(tmp_path):
    from kubelet.kuberuntime import KubeRuntimeManager
    from proto.cri import api_pb2 as pb
    mgr = KubeRuntimeManager(None, root_dir=str(tmp_path), node_ip="127.0.0.1", recorder=lambda *a: None)
    cfg = mgr.container_config(pod(), {"name": "app", "image": "busybox:1.35"}, 0, pod_ip="10.244.0.2")
    assert cfg.linux.security_context.namespace_options.pid == pb.CONTAINER


def test_seccomp_profile_container_over_pod_unconfined_by_default():
    """As the kubelet's getSeccompProfile with --seccomp-default=false."""
    from kubelet.kuberuntime import seccomp_profile
    from proto.cri import api_pb2 as pb
    p = pod()
    assert seccomp_profile(p).profile_type == pb.SecurityProfile.Unconfined
    p["spec"]["securityContext"] = {"seccompProfile": {"type": "RuntimeDefault"}}
    c = {"name": "app", "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "a.json"}}}
    assert seccomp_profile(p).profile_type == pb.SecurityProfile.RuntimeDefault
    assert seccomp_profile(p, {"name": "x"}).profile_type == pb.SecurityProfile.RuntimeDefault
    prof = seccomp_profile(p, c, seccomp_root="/var/lib/kubelet/seccomp")
    assert (prof.profile_type, prof.localhost_ref) == (pb.SecurityProfile.Localhost, "/var/lib/kubelet/seccomp/a.json")


def test_service_env_as_docker_links():
    """Service variables (FromServices): own namespace unless enableServiceLinks is false, kubernetes always."""
    from kubelet.envvars import container_env, service_env

    svcs = [{"metadata": {"name": "kubernetes", "namespace": "default"},
             "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}},
            {"metadata": {"name": "web-api", "namespace": "team"},
             "spec": {"clusterIP": "10.96.0.9", "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                                                          {"name": "dns", "port": 53, "protocol": "UDP"}]}},
            {"metadata": {"name": "headless", "namespace": "team"}, "spec": {"clusterIP": "None",
                                                                             "ports": [{"port": 1}]}},
            {"metadata": {"name": "other", "namespace": "elsewhere"},
             "spec": {"clusterIP": "10.96.0.7", "ports": [{"port": 7}]}}]
    pod = {"metadata": {"name": "p", "namespace": "team"}, "spec": {}}
    env = service_env(pod, svcs)
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1" and env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert env["WEB_API_SERVICE_HOST"] == "10.96.0.9" and env["WEB_API_PORT"] == "tcp://10.96.0.9:80"
    assert env["WEB_API_PORT_53_UDP"] == "udp://10.96.0.9:53" and env["WEB_API_PORT_53_UDP_ADDR"] == "10.96.0.9"
    assert not any(k.startswith(("HEADLESS_", "OTHER_")) for k in env)
    pod["spec"]["enableServiceLinks"] = False
    assert set(service_env(pod, svcs)) == {k for k in env if k.startswith("KUBERNETES_")}
    c = {"name": "c", "env": [{"name": "WEB_API_SERVICE_HOST", "value": "mine"}]}
    out = container_env(pod, c, pod_ip="", node_ip="", services=env)
    assert out["WEB_API_SERVICE_HOST"] == "mine" and out["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"


def test_ephemeral_containers_start_once_even_during_init_and_join_the_target():
    """Upstream's computePodActions: an ephemeral container without a runtime status starts (also
    while an init container runs), one that ran is never restarted; its config joins the target's
    PID namespace (TARGET)."""
    from kubelet.kuberuntime import namespaces_for_pod
    from proto.cri import api_pb2 as pb
    from kubelet.container import STATE_EXITED, STATE_RUNNING
    p = pod(init=("i1",))
    p["spec"]["ephemeralContainers"] = [{"name": "dbg", "image": "busybox:1.35", "targetContainerName": "app"}]
    a = compute_pod_actions(p, status(c("i1", STATE_RUNNING)))
    assert [x["name"] for x in a.ephemeral_to_start] == ["dbg"] and a.next_init is None
    a = compute_pod_actions(p, status(c("i1", STATE_EXITED), c("app", STATE_RUNNING),
                                      c("dbg", STATE_EXITED, code=1)))
    assert a.ephemeral_to_start == [] and not a.kill_pod
    ns = namespaces_for_pod(p, target_id="cid-app")
    assert (ns.pid, ns.target_id, ns.network) == (pb.TARGET, "cid-app", pb.POD)
    assert namespaces_for_pod(p).pid == pb.CONTAINER
