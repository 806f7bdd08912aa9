"""Installs kubeling's CNI plugins as executables in a CNI bin directory.

CNI runtimes find a plugin by its ``type`` as a file name in CNI_PATH. Our
plugins are Python, so we write tiny executables named ``bridge`` and
``host-local``: a ``#!<python> -IS`` script (no site, no environment) that
imports the stdlib-only stub (cni/stub.py, byte-compiled once) and runs it.
The stub forwards the invocation to the node's CNI server (cni.server) when
one listens, else runs ``python -m cni.bridge`` / ``-m cni.host_local``
itself. The reference Go plugins are found the same way.
"""
from __future__ import annotations

import os
import sys

from cni.invoke import WRAPPER_MARKER

PLUGINS = {"bridge": "cni.bridge", "host-local": "cni.host_local"}


def install(bin_dir: str, *, python: str | None = None) -> list[str]:
    """Write one executable wrapper per plugin into ``bin_dir``.

    ``python`` defaults to the running interpreter. The stub finds the project
    from its own path, so the wrapper works whether or not kubeling is
    installed. Returns the paths written; raises OSError when bin_dir is not
    writable.
    """
    python = python or sys.executable
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    stub = os.path.join(root, "cni", "stub.py")
    bin_dir = os.path.abspath(bin_dir)
    os.makedirs(bin_dir, exist_ok=True)
    written = []
    for name in PLUGINS:
        path = os.path.join(bin_dir, name)
        tmp = path + ".tmp"
        call = (f"import sys; sys.path.insert(0, {os.path.dirname(stub)!r}); import stub; "
                f"sys.exit(stub.main([{name!r}, {bin_dir!r}]))")
        with open(tmp, "w") as f:
            if len(python) < 120 and " " not in python:  # the kernel's shebang limit; one argument only
                f.write(f"#!{python} -IS\n{WRAPPER_MARKER}{name}\n{call}\n")
            else:
                f.write(f"#!/bin/sh\n{WRAPPER_MARKER}{name}\nexec '{python}' -IS -c \"{call}\" \"$@\"\n")
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
        written.append(path)
    return written


def is_installed(bin_dir: str) -> bool:
    """True when ``bin_dir`` holds our bridge wrapper (an older or current one)."""
    try:
        with open(os.path.join(bin_dir, "bridge"), "rb") as f:
            head = f.read(1024)
    except OSError:
        return False
    return b"-m cni.bridge" in head or f"{WRAPPER_MARKER}bridge".encode() in head


def is_outdated(bin_dir: str) -> bool:
    """True when ``bin_dir`` holds our bridge wrapper from before the stub (``-m cni.bridge``)."""
    try:
        with open(os.path.join(bin_dir, "bridge"), "rb") as f:
            return b"-m cni.bridge" in f.read(1024)
    except OSError:
        return False


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m cni.install BIN_DIR", file=sys.stderr)
        sys.exit(2)
    for p in install(sys.argv[1]):
        print(p)
