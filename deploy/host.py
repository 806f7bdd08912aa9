"""What a node host needs before kubeling's processes can run: a Docker
engine and the local images.

No container registry is reachable, so the ``busybox:1.35`` image (also
tagged ``busybox:latest``; the CRI shim's default sandbox image too) is
built from the Debian ``busybox-static`` binary through ``docker import``.
dockerd is started only when none answers, with ``--iptables=false
--bridge=none`` because kubeling owns the host's pod networking (see
README); its pid is recorded so that ``down`` stops only a dockerd we started.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tarfile
import tempfile
import time

BUSYBOX_BINARY = "/bin/busybox"
BUSYBOX_TAGS = ("busybox:1.35", "busybox:latest")


class HostError(Exception):
    """The host lacks something kubeling needs (message says what and how to fix it)."""


def _run(*args: str, check: bool = True, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, timeout=timeout, capture_output=True, text=True, **kwargs)


def docker_ok() -> bool:
    """True when ``docker info`` answers within 10 s."""
    if not shutil.which("docker"):
        return False
    try:
        return _run("docker", "info", check=False, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def ensure_dockerd(run_dir: pathlib.Path, log_dir: pathlib.Path, *, timeout: float = 60) -> bool:
    """Start dockerd unless one answers; returns True when this call started it.

    The pid goes to ``run_dir/dockerd.pid``. Raises HostError if dockerd is
    missing or does not answer within ``timeout`` seconds.
    """
    if docker_ok():
        return False
    dockerd = shutil.which("dockerd")
    if not dockerd:
        raise HostError("dockerd not found: install docker.io (`make deps`)")
    run_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / "dockerd.log", "ab")
    proc = subprocess.Popen([dockerd, "--iptables=false", "--bridge=none"], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    (run_dir / "dockerd.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise HostError(f"dockerd exited with {proc.returncode}; see {log_dir / 'dockerd.log'}")
        if docker_ok():
            return True
        time.sleep(0.5)
    raise HostError(f"dockerd did not answer within {timeout:.0f}s; see {log_dir / 'dockerd.log'}")


def stop_dockerd(run_dir: pathlib.Path, *, timeout: float = 20) -> bool:
    """Stop the dockerd recorded in ``run_dir/dockerd.pid`` (only one we started). True if stopped."""
    pidfile = run_dir / "dockerd.pid"
    if not pidfile.exists():
        return False
    from deploy.procs import stop_pid

    pid = int(pidfile.read_text().strip() or 0)
    stopped = stop_pid(pid, expect="dockerd", timeout=timeout)
    pidfile.unlink(missing_ok=True)
    return stopped


def image_present(ref: str) -> bool:
    """True when the local Docker has image ``ref``."""
    return _run("docker", "image", "inspect", ref, check=False, timeout=30).returncode == 0


def ensure_busybox_image() -> bool:
    """Build ``busybox:1.35`` (+ ``:latest``) from the busybox-static binary
    unless present. Returns True when it was built. Raises HostError if the
    binary is missing."""
    if all(image_present(t) for t in BUSYBOX_TAGS):
        return False
    if not os.path.exists(BUSYBOX_BINARY):
        raise HostError(f"{BUSYBOX_BINARY} not found: install busybox-static (`make deps`)")
    applets = _run(BUSYBOX_BINARY, "--list").stdout.split()
    with tempfile.TemporaryDirectory(prefix="kubeling-busybox-") as tmp:
        root = pathlib.Path(tmp, "rootfs")
        for d in ("bin", "etc", "tmp", "www", "root", "proc", "sys", "dev"):
            (root / d).mkdir(parents=True)
        shutil.copy2(BUSYBOX_BINARY, root / "bin" / "busybox")
        for applet in applets:
            if applet != "busybox" and not (root / "bin" / applet).exists():
                (root / "bin" / applet).symlink_to("busybox")
        (root / "tmp").chmod(0o1777)
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
        tar_path = pathlib.Path(tmp, "rootfs.tar")
        with tarfile.open(tar_path, "w") as tar:
            tar.add(root, arcname=".")
        _run("docker", "import", "-c", 'CMD ["sh"]', "-c", "ENV PATH=/bin", str(tar_path), BUSYBOX_TAGS[0],
             timeout=120)
    for tag in BUSYBOX_TAGS[1:]:
        _run("docker", "tag", BUSYBOX_TAGS[0], tag)
    return True
