"""Installs kubeling's CNI plugins as executables in a CNI bin directory.

CNI runtimes find a plugin by its ``type`` as a file name in CNI_PATH. Our
plugins are Python modules, so we write tiny shell wrappers named ``bridge``
and ``host-local`` that exec ``<python> -m cni.bridge`` /
``-m cni.host_local``; the reference Go plugins are found the same way.
"""
from __future__ import annotations

import os
import sys

PLUGINS = {"bridge": "cni.bridge", "host-local": "cni.host_local"}


def install(bin_dir: str, *, python: str | None = None) -> list[str]:
    """Write one executable wrapper per plugin into ``bin_dir``.

    ``python`` defaults to the running interpreter. The project root is put on
    PYTHONPATH so the wrapper works whether or not kubeling is installed.
    Returns the paths written; raises OSError when bin_dir is not writable.
    """
    python = python or sys.executable
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.makedirs(bin_dir, exist_ok=True)
    written = []
    for name, module in PLUGINS.items():
        path = os.path.join(bin_dir, name)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write("#!/bin/sh\n"
                    f"PYTHONPATH='{root}'${{PYTHONPATH:+:$PYTHONPATH}} "
                    f"exec '{python}' -m {module} \"$@\"\n")
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
        written.append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m cni.install BIN_DIR", file=sys.stderr)
        sys.exit(2)
    for p in install(sys.argv[1]):
        print(p)
