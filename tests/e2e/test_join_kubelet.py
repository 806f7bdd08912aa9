"""The real kubelet joins with a bootstrap token: ``kubeling join --dry-run`` writes its bootstrap kubeconfig,
``python -m kubelet --bootstrap-kubeconfig`` (over the real CRI shim and Docker) requests its client
certificate, the controller-manager's csrapproving and csrsigning controllers approve and issue it, the kubelet
writes its kubeconfig and registers its Node. Needs Docker (the CRI shim); names its bridge kltb0.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest
from cryptography import x509

import support
from kubeling.pki import pubkeypin

KUBECTL = "/usr/bin/kubectl"
KUBELING = os.path.join(os.path.dirname(sys.executable), "kubeling")
NODE = "kltb-w1"
BRIDGE = "kltb0"


@pytest.fixture
def docker_client():
    return support.docker_or_skip("the joining kubelet's CRI shim")


def test_kubelet_bootstraps_and_registers(tmp_path, docker_client):
    """From a token to a registered Node, the kubelet's client certificate obtained through an auto-approved CSR."""
    try:
        with support.secure_control_plane(tmp_path,
                                          controllers="csrapproving,csrsigning,bootstrapsigner") as cp:
            kc = str(cp.kubeconfig)
            token = subprocess.run([KUBELING, "--kubeconfig", kc, "token", "create"], capture_output=True,
                                   text=True, timeout=60, check=True).stdout.strip()
            pin = pubkeypin.hash_cert(x509.load_pem_x509_certificate((cp.extra["pki"] / "ca.crt").read_bytes()))
            home = tmp_path / "w"
            r = subprocess.run([KUBELING, "join", cp.server, "--token", token, "--discovery-token-ca-cert-hash", pin,
                                "--node-name", NODE, "--node-ip", "127.0.0.1", "--home", str(home), "--dry-run"],
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            assert (home / "units" / f"kubeling-kubelet-{NODE}.service").exists()
            nd = home / "nodes" / NODE
            sock = nd / "cri.sock"
            cp.procs.spawn("shim", [sys.executable, "-m", "kubelet.dockershim", "--listen", f"unix://{sock}",
                                    "--node-name", NODE, "--state-dir", str(nd / "shim"),
                                    "--cni-bin-dir", str(nd / "cni" / "bin"), "--cni-conf-dir", str(nd / "cni" / "net.d"),
                                    "--cni-bridge", BRIDGE, "--pod-infra-container-image", "busybox:1.35"])
            port, healthz = support.free_port(), support.free_port()
            t0 = time.monotonic()
            cp.procs.spawn("kubelet", [sys.executable, "-m", "kubelet", "--kubeconfig", str(nd / "kubelet.kubeconfig"),
                                       "--bootstrap-kubeconfig", str(nd / "bootstrap-kubelet.kubeconfig"),
                                       "--cert-dir", str(nd / "pki"), "--rotate-certificates",
                                       "--hostname-override", NODE,
                                       "--node-ip", "127.0.0.1", "--container-runtime-endpoint", f"unix://{sock}",
                                       "--root-dir", str(nd), "--port", str(port), "--healthz-port", str(healthz),
                                       "--bridge-name", BRIDGE])

            def registered() -> bool:
                if cp.procs.get("kubelet").poll() is not None:
                    raise AssertionError("kubelet exited:\n" + cp.procs.log("kubelet"))
                r = subprocess.run([KUBECTL, "--kubeconfig", kc, "get", "node", NODE, "-o", "json"],
                                   capture_output=True, text=True, timeout=20)
                return r.returncode == 0
            try:
                support.wait_for("the bootstrapped kubelet's Node", registered, 60, 0.5,
                                 errors=(httpx.HTTPError, subprocess.TimeoutExpired))
            except AssertionError as e:
                raise AssertionError(f"{e}\n{cp.procs.log('kubelet')}\n{cp.procs.log('controller-manager')}") \
                    from None
            print(f"kubelet start to Node registered with a bootstrapped certificate: {time.monotonic() - t0:.1f}s")
            pem = nd / "pki" / "kubelet-client-current.pem"
            assert pem.is_symlink()
            cert = x509.load_pem_x509_certificates(pem.read_bytes())[0]
            assert cert.subject.rfc4514_string() == f"CN=system:node:{NODE},O=system:nodes"
            csrs = json.loads(subprocess.run([KUBECTL, "--kubeconfig", kc, "get", "csr", "-o", "json"],
                                             capture_output=True, text=True, timeout=20, check=True).stdout)["items"]
            mine = [c for c in csrs if c["spec"]["username"] == f"system:bootstrap:{token[:6]}"]
            assert len(mine) == 1 and mine[0]["metadata"]["name"].startswith("node-csr-")
            assert [c["reason"] for c in mine[0]["status"]["conditions"]] == ["AutoApproved"]
            table = subprocess.run([KUBECTL, "--kubeconfig", kc, "get", "csr", mine[0]["metadata"]["name"]],
                                   capture_output=True, text=True, timeout=20, check=True).stdout
            assert table.split()[-1] == "Approved,Issued", table
    finally:
        for c in docker_client.containers.list(all=True, filters={"label": f"io.kubeling.node={NODE}"}):
            c.remove(force=True)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, timeout=10, check=False)
