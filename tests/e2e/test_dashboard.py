"""The web dashboard (addons/dashboard) in headless Chromium against real processes.

etcd + apiserver (with ``--token-auth-file``, so the dashboard's on-behalf-of
calls are really authenticated) + scheduler + controller-manager + a real node
(CRI shim over Docker + kubelet) from tests/support.py, then
``python -m addons.dashboard`` on a free port, driven by Selenium with the
system chromium and chromedriver. The page must show a Deployment created
through the API appear and become ready (2/2) without a reload, its Service's
endpoints, events, a pod's log line and CPU/memory samples; a screenshot is
saved and checked non-blank (and copied to $DASHBOARD_SCREENSHOT when set).
Needs root and Docker with busybox:1.35; installs chromium through
deploy/install-deps.sh when missing (skips only if that fails). A test with
its own apiserver under RBAC checks that a viewer's token decides what it sees.
Test-only names: node "dashtest-node", bridge "dashtest0", pod CIDR 10.244.242.0/24.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import pytest

import support
from support import wait_for

NODE = "dashtest-node"
BRIDGE = "dashtest0"
POD_CIDR = "10.244.242.0/24"
IMAGE = "busybox:1.35"
TOKEN = "dashboard-admin-token"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
LOG_LINE = "hello from the dashboard test"

pytestmark = pytest.mark.e2e


def chromium_or_skip() -> None:
    """Make sure chromium and chromedriver exist: run deploy/install-deps.sh once if not, skip if still missing."""
    def present() -> bool:
        return os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)
    if not present():
        r = subprocess.run(["bash", str(support.REPO / "deploy" / "install-deps.sh"), "--test"], capture_output=True,
                           text=True, timeout=900)
        if not present():
            pytest.skip(f"the dashboard test needs {CHROMIUM} and {CHROMEDRIVER} (Debian chromium, "
                        f"chromium-driver) and deploy/install-deps.sh could not install them: "
                        f"{(r.stderr or r.stdout).strip()[-300:]}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A control plane with tokens, a real node, scheduler and controllers, and the dashboard."""
    if os.geteuid() != 0:
        pytest.skip("the dashboard e2e test needs root (bridge, Docker)")
    if shutil.which("etcd") is None:
        pytest.skip("the dashboard e2e test needs /usr/bin/etcd")
    chromium_or_skip()
    docker_client = support.docker_or_skip("the dashboard e2e test", IMAGE)
    tmp = tmp_path_factory.mktemp("dashboard")
    tokens = tmp / "tokens.csv"
    tokens.write_text(f'{TOKEN},admin,admin-uid,"system:masters"\n')
    with support.node(tmp, name=NODE, bridge=BRIDGE, pod_cidr=POD_CIDR, docker_client=docker_client, image=IMAGE,
                      kubelet_flags=["--sync-frequency", "2"],
                      apiserver_args=["--token-auth-file", str(tokens)]) as n:
        support.start_scheduler_and_controllers(n.cp, timeout=60)
        wait_for("namespace default", lambda: n.http.get("/api/v1/namespaces/default").status_code == 200, 30)
        port = support.free_port()
        n.procs.spawn("dashboard", [sys.executable, "-m", "addons.dashboard", "--kubeconfig", n.kubeconfig,
                                    "--bind-address", "127.0.0.1", "--port", str(port), "--metrics-interval", "2"])
        n.procs.wait_ready("dashboard", url=f"http://127.0.0.1:{port}/healthz", timeout=30)
        try:
            yield {"node": n, "http": n.http, "url": f"http://127.0.0.1:{port}", "tmp": tmp}
        finally:
            # Leave no pod behind for the node fixture's teardown to race with.
            n.http.delete("/apis/apps/v1/namespaces/default/deployments/dash-web")
            n.http.delete("/api/v1/namespaces/default/services/dash-web")


@pytest.fixture
def browser(cluster):
    """Headless Chromium through Selenium (system browser and driver); quit at the end whatever happens."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="the dashboard test needs selenium (test extra)")
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1600,1100", f"--user-data-dir={cluster['tmp'] / 'chromium-profile'}"):
        opts.add_argument(arg)
    service = Service(CHROMEDRIVER, log_output=str(cluster["tmp"] / "chromedriver.log"))
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def page_wait(driver, what: str, script: str, *args, timeout: float = 60.0):
    """Poll ``script`` in the page until it returns something truthy; fail with the page's state."""
    try:
        return wait_for(what, lambda: js(driver, script, *args), timeout, 0.5)
    except AssertionError as e:
        status = js(driver, "return document.querySelector('#status').textContent")
        raise AssertionError(f"{e}\npage status: {status}\nbody: "
                             f"{js(driver, 'return document.body.innerText')[:3000]}") from None


def png_colors(path: Path, *, limit: int = 50) -> int:
    """Distinct pixel colours in an 8-bit RGB/RGBA PNG (stdlib only: zlib + PNG row unfiltering), up to ``limit``."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if ctype == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6), f"unexpected PNG format depth={depth} colour={colour}"
            bpp = 3 if colour == 2 else 4
        elif ctype == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride = zlib.decompress(idat), width * bpp
    prev, colours = bytearray(stride), set()
    for y in range(height):
        ftype, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 0xFF
            elif ftype == 4:
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        if y % 16 == 0:
            colours.update(bytes(line[i:i + 3]) for i in range(0, stride, bpp * 4))
            if len(colours) >= limit:
                return len(colours)
        prev = line
    return len(colours)


def test_login_is_required_and_the_token_is_forwarded(cluster):
    """No token -> 401 (no --enable-skip-login); a token the apiserver refuses -> 401; the admin token -> admin."""
    url = cluster["url"]
    with httpx.Client(base_url=url, timeout=10, trust_env=False) as http:
        assert http.get("/healthz").text == "ok"
        assert http.get("/api/v1/settings").json()["skippable"] is False
        r = http.get("/api/stream")
        assert r.status_code == 401 and "token" in r.json()["message"], r.text
        r = http.get("/api/proxy/api/v1/pods")
        assert r.status_code == 401, r.text
        r = http.get("/api/v1/login/status", headers={"Authorization": "Bearer not-a-token"})
        assert r.status_code == 401, r.text
        r = http.get("/api/proxy/api/v1/pods", headers={"Authorization": "Bearer not-a-token"})
        assert r.status_code == 401, r.text   # the apiserver's own answer, passed through
        ok = {"Authorization": f"Bearer {TOKEN}"}
        r = http.get("/api/v1/login/status", headers=ok)
        assert r.status_code == 200 and r.json()["user"] == "admin", r.text
        r = http.get("/api/proxy/api/v1/nodes", headers=ok)
        assert [i["metadata"]["name"] for i in r.json()["items"]] == [NODE], r.text
        assert http.get("/api/proxy/healthz", headers=ok).status_code == 404


def test_skip_login_uses_the_kubeconfig_identity(cluster):
    """With --enable-skip-login a browser without a token acts as the --kubeconfig identity."""
    n = cluster["node"]
    port = support.free_port()
    n.procs.spawn("dashboard-skip", [sys.executable, "-m", "addons.dashboard", "--kubeconfig", n.kubeconfig,
                                     "--port", str(port), "--enable-skip-login"])
    try:
        n.procs.wait_ready("dashboard-skip", url=f"http://127.0.0.1:{port}/healthz", timeout=30)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, trust_env=False) as http:
            assert http.get("/api/v1/settings").json()["skippable"] is True
            r = http.get("/api/proxy/api/v1/nodes")
            assert r.status_code == 200 and r.json()["items"], r.text
    finally:
        n.procs.stop("dashboard-skip")


def test_dashboard_live_in_chromium(cluster, browser):
    http, url = cluster["http"], cluster["url"]
    # A token the apiserver refuses lands on the login form with the apiserver's answer.
    browser.get(f"{url}/#token=wrong-token")
    page_wait(browser, "the login form", "return !document.querySelector('#login').hidden && "
              "document.querySelector('#login-error').textContent.includes('Unauthorized')", timeout=30)
    browser.get(f"{url}/?again#token={TOKEN}")   # another query string: a full page load
    page_wait(browser, "the live stream", "return document.querySelector('#status').textContent === 'live'", timeout=30)
    page_wait(browser, "the node row", "return !!document.querySelector(`#nodes tr[data-key='${arguments[0]}']`)",
              NODE, timeout=30)
    assert js(browser, "return document.querySelector('#user').textContent") == "signed in as admin"
    js(browser, "window.__notReloaded = 42;")

    labels = {"app": "dash-web"}
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "dash-web", "namespace": "default"},
              "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                       "template": {"metadata": {"labels": labels},
                                    "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                                        "name": "web", "image": IMAGE, "command": ["sh", "-c"],
                                        "args": [f"echo {LOG_LINE} $(hostname); "
                                                 "(i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done) & "
                                                 "exec httpd -f -p 8080"]}]}}}}
    r = http.post("/apis/apps/v1/namespaces/default/deployments", json=deploy)
    assert r.status_code == 201, r.text
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dash-web", "namespace": "default"},
           "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}}
    r = http.post("/api/v1/namespaces/default/services", json=svc)
    assert r.status_code == 201, r.text

    row = "#deployments tr[data-key='default/dash-web']"
    page_wait(browser, "the Deployment row", f"return !!document.querySelector(\"{row}\")", timeout=30)
    t0 = time.monotonic()
    try:
        page_wait(browser, "the Deployment ready 2/2",
                  f"return document.querySelector(\"{row} td.ready\").textContent === '2/2'", timeout=120)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{cluster['node'].logs()}") from None
    print(f"Deployment shown ready 2/2 {time.monotonic() - t0:.1f}s after its row appeared")
    page_wait(browser, "rollout complete",
              f"return document.querySelector(\"{row} td.rollout\").textContent === 'complete'", timeout=30)
    assert js(browser, "return window.__notReloaded") == 42, "the page was reloaded"

    pods = js(browser, "return [...document.querySelectorAll('#pods tr')].map(r => r.dataset.key)"
                       ".filter(k => k && k.startsWith('default/dash-web-'))")
    assert len(pods) >= 2, pods
    # The Service lists both pods' IPs from the EndpointSlice.
    ips = [p["status"]["podIP"] for p in http.get("/api/v1/namespaces/default/pods",
                                                   params={"labelSelector": "app=dash-web"}).json()["items"]]
    page_wait(browser, "the Service's endpoints",
              "const t = document.querySelector(\"#services tr[data-key='default/dash-web'] td.endpoints\");"
              "return t && arguments[0].every(ip => t.textContent.includes(ip + ':8080'))", ips, timeout=30)
    page_wait(browser, "an event of the rollout",
              "return [...document.querySelectorAll('#events tr')].some(r => r.textContent.includes('dash-web'))",
              timeout=30)

    pod = sorted(pods)[0]
    browser.find_element("css selector", f"#pods tr[data-key='{pod}'] button.logs").click()
    text = page_wait(browser, "the pod's log line",
                     "const t = document.querySelector('#logs').textContent;"
                     "return t.includes(arguments[0]) ? t : ''", LOG_LINE, timeout=30)
    assert pod.split("/")[1] in text, text   # the line carries the pod's hostname
    # follow: lines the container prints after the log was opened arrive in the open view
    last_tick = max((int(w.split()[1]) for w in text.splitlines() if w.startswith("tick ")), default=-1)
    page_wait(browser, "followed log lines", "return document.querySelector('#logs').textContent"
              ".includes('tick ' + arguments[0])", last_tick + 3, timeout=30)
    page_wait(browser, "CPU/memory samples of the pod",
              "const s = document.querySelector('#mem-chart svg'); return s && +s.dataset.points >= 5", timeout=60)

    # Choosing a namespace re-opens the stream for that namespace only; the rows come back.
    from selenium.webdriver.common.keys import Keys
    browser.find_element("css selector", "#namespace").send_keys("default", Keys.TAB)
    page_wait(browser, "the namespaced stream", "return document.querySelector('#status').textContent === 'live'"
              " && S.namespace === 'default'"
              " && !!document.querySelector(\"#deployments tr[data-key='default/dash-web']\")"
              " && !!document.querySelector(\"#nodes tr[data-key='" + NODE + "']\")", timeout=30)
    assert js(browser, "return window.__notReloaded") == 42, "the page was reloaded"

    shot = Path(cluster["tmp"]) / "dashboard.png"
    assert browser.save_screenshot(str(shot)), "screenshot failed"
    print(f"dashboard screenshot: {shot}")
    colours = png_colors(shot)
    assert colours >= 10, f"screenshot {shot} looks blank ({colours} colours)"
    if os.environ.get("DASHBOARD_SCREENSHOT"):   # a copy that outlives pytest's rotated tmp dirs
        shutil.copyfile(shot, os.environ["DASHBOARD_SCREENSHOT"])
        print(f"dashboard screenshot copied to {os.environ['DASHBOARD_SCREENSHOT']}")


def read_sse(http: httpx.Client, path: str, headers: dict, want, *, timeout: float = 20.0) -> list[tuple[str, dict]]:
    """Read SSE messages from ``path`` until ``want(messages)`` is true; fail after ``timeout`` s."""
    msgs: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout
    with http.stream("GET", path, headers=headers, timeout=httpx.Timeout(10, read=timeout)) as r:
        assert r.status_code == 200, r.read()
        event = "message"
        for line in r.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                msgs.append((event, json.loads(line[5:])))
                if want(msgs):
                    return msgs
            elif not line:
                event = "message"
            assert time.monotonic() < deadline, f"timed out reading {path}: {msgs}"
    raise AssertionError(f"{path} ended early: {msgs}")


def test_rbac_decides_what_a_token_sees(tmp_path):
    """Under RBAC a viewer bound to one namespace gets 403 for cluster-wide lists through the dashboard
    (the apiserver's answer, as that user) and a live stream of that namespace only."""
    if shutil.which("etcd") is None:
        pytest.skip("needs /usr/bin/etcd")
    tokens = tmp_path / "tokens.csv"
    tokens.write_text('admin-token,admin,1,"system:masters"\nviewer-token,viewer,2\n')
    with support.control_plane(tmp_path, "etcd", apiserver_args=["--token-auth-file", str(tokens),
                                                                 "--authorization-mode", "RBAC"]) as cp:
        admin = httpx.Client(base_url=cp.server, timeout=10, trust_env=False,
                             headers={"Authorization": "Bearer admin-token"})
        wait_for("namespace default", lambda: admin.get("/api/v1/namespaces/default").status_code == 200, 30)
        rules = [{"apiGroups": ["", "apps", "discovery.k8s.io"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]
        role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": "view-all", "namespace": "default"}, "rules": rules}
        binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": "viewer", "namespace": "default"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "view-all"},
                   "subjects": [{"kind": "User", "name": "viewer", "apiGroup": "rbac.authorization.k8s.io"}]}
        for path, obj in (("roles", role), ("rolebindings", binding)):
            r = admin.post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/default/{path}", json=obj)
            assert r.status_code == 201, r.text
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "seen", "namespace": "default"},
               "spec": {"ports": [{"port": 80}]}}
        assert admin.post("/api/v1/namespaces/default/services", json=svc).status_code == 201
        admin.close()
        port = support.free_port()
        cp.procs.spawn("dashboard", [sys.executable, "-m", "addons.dashboard", "--kubeconfig", str(cp.kubeconfig),
                                     "--port", str(port)])
        cp.procs.wait_ready("dashboard", url=f"http://127.0.0.1:{port}/healthz", timeout=30)
        viewer = {"Authorization": "Bearer viewer-token"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, trust_env=False) as http:
            assert http.get("/api/v1/login/status", headers=viewer).json()["user"] == "viewer"
            assert http.get("/api/proxy/api/v1/services", headers=viewer).status_code == 403
            r = http.get("/api/proxy/api/v1/namespaces/default/services", headers=viewer)
            assert r.status_code == 200 and "seen" in [s["metadata"]["name"] for s in r.json()["items"]], r.text

            def done(msgs):
                names = {(e, d["resource"]) for e, d in msgs}
                return ("denied", "nodes") in names and ("sync", "services") in names
            msgs = read_sse(http, "/api/stream?namespace=default", viewer, done)
            denied = next(d for e, d in msgs if e == "denied" and d["resource"] == "nodes")
            assert denied["code"] == 403, denied
            services = next(d for e, d in msgs if e == "sync" and d["resource"] == "services")
            assert "seen" in [s["metadata"]["name"] for s in services["items"]], services
            assert not any(e == "sync" and d["resource"] == "nodes" for e, d in msgs), msgs

            # When the apiserver goes away the open stream says so (and keeps retrying).
            stopped: list[bool] = []

            def unreachable(msgs):
                if not stopped and any(e == "sync" and d["resource"] == "services" for e, d in msgs):
                    cp.procs.stop("apiserver")
                    stopped.append(True)
                return any(e == "unreachable" for e, _ in msgs)
            msgs = read_sse(http, "/api/stream?namespace=default", viewer, unreachable, timeout=30)
            assert stopped and http.get("/healthz").text == "ok", msgs


def test_bad_flags_are_one_line(tmp_path):
    """A missing kubeconfig or a port in use ends the process with one readable line and status 1."""
    kc = tmp_path / "kc"
    support._kubeconfig.write(kc, server="http://127.0.0.1:1", user="x")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        for args, want in ((["--kubeconfig", str(tmp_path / "missing")], "cannot use --kubeconfig"),
                           (["--kubeconfig", str(kc), "--port", str(busy.getsockname()[1])], "cannot listen on")):
            r = subprocess.run([sys.executable, "-m", "addons.dashboard", *args], capture_output=True, text=True,
                               timeout=30, cwd=support.REPO)
            assert r.returncode == 1 and want in r.stderr and "Traceback" not in r.stderr, r.stderr
