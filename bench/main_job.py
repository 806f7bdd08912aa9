"""Benchmark of the main job: how long a user waits at each step.

Starts a cluster with ``python -m deploy up`` in a temporary state directory
(the default ports must be free), then runs ROUNDS rounds of: ``kubeling
apply -f deploy/examples/web.yaml`` -> 3 pods Running -> first page through
the service IP -> ``kubeling delete -f`` -> pods gone from the API and their
containers from Docker. Prints each phase's median and worst over the rounds,
then stops the cluster. Bounded: every wait has a timeout, ROUNDS <= 20.

    .venv/bin/python bench/main_job.py [ROUNDS]
"""
from __future__ import annotations

import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

REPO = pathlib.Path(__file__).resolve().parents[1]
KUBELING = str(pathlib.Path(sys.executable).parent / "kubeling")
WEB = str(REPO / "deploy" / "examples" / "web.yaml")
API = "http://127.0.0.1:6443"


def wait(what: str, fn, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out after {timeout}s waiting for {what}")


def web_pods() -> list[dict]:
    items = httpx.get(f"{API}/api/v1/namespaces/default/pods", params={"labelSelector": "app=web"},
                      timeout=5).json()["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def running(n: int) -> bool:
    pods = web_pods()
    return len(pods) == n and all(p.get("status", {}).get("phase") == "Running" for p in pods)


def page(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def containers_left() -> int:
    out = subprocess.run(["docker", "ps", "-q", "--filter", "label=io.kubeling.node=node1",
                          "--filter", "label=io.kubernetes.pod.namespace=default"],
                         capture_output=True, text=True, timeout=30).stdout
    return len(out.split())


def main() -> int:
    rounds = min(int(sys.argv[1]) if len(sys.argv) > 1 else 5, 20)
    home = tempfile.mkdtemp(prefix="kubeling-bench-")
    env = {**os.environ, "KUBELING_HOME": home}
    run = lambda *a: subprocess.run([KUBELING, *a], env=env, capture_output=True, text=True, timeout=120,
                                    check=True)
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "deploy", "up"], cwd=REPO, env=env, check=True, timeout=300,
                   capture_output=True)
    up = time.monotonic() - t0
    phases: dict[str, list[float]] = {"apply -> 3 Running": [], "apply -> page via service IP": [],
                                      "delete -> pods and containers gone": []}
    try:
        for _ in range(rounds):
            t = time.monotonic()
            run("apply", "-f", WEB)
            wait("3 pods Running", lambda: running(3), 60)
            phases["apply -> 3 Running"].append(time.monotonic() - t)
            ip = httpx.get(f"{API}/api/v1/namespaces/default/services/web", timeout=5).json()["spec"]["clusterIP"]
            wait("page", lambda: page(f"http://{ip}/"), 30)
            phases["apply -> page via service IP"].append(time.monotonic() - t)
            t = time.monotonic()
            run("delete", "-f", WEB)
            wait("pods and containers gone", lambda: not web_pods() and containers_left() == 0, 60)
            phases["delete -> pods and containers gone"].append(time.monotonic() - t)
    finally:
        subprocess.run([sys.executable, "-m", "deploy", "clean"], cwd=REPO, env=env, timeout=300,
                       capture_output=True)
    print(f"main job, {rounds} rounds, 2 cores (docker running, busybox image present)")
    print(f"  deploy up -> node Ready          {up:6.2f} s")
    for name, xs in phases.items():
        print(f"  {name:<34} median {statistics.median(xs):5.2f} s  worst {max(xs):5.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
