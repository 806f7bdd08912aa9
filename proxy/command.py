"""Running the kernel tools (iptables-restore, nft, conntrack) without blocking the event loop.

Every proxy mode feeds its ruleset to a tool on stdin and must never block
asyncio on it nor leave it running when the proxy stops, optionally inside a
named network namespace (tests, the benchmark). Mirrors the role of
k8s.io/utils/exec in upstream's proxiers.
"""
from __future__ import annotations

import asyncio


async def run(cmd: list[str], *, stdin: str | None = None, timeout: float,
              netns: str | None = None) -> tuple[list[str], int | None, str, str]:
    """Run ``cmd`` (inside ``netns`` via ``ip netns exec`` if given), feeding ``stdin``.

    Returns (the command as run, exit status, stdout, stderr); the status is
    None when it took longer than ``timeout`` seconds (it is killed then).
    Cancelling the caller kills the process too. Raises FileNotFoundError when
    the binary does not exist.
    """
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return cmd, None, "", f"timed out after {timeout}s"
    except asyncio.CancelledError:
        proc.kill()  # a stopping proxy must not leave a restore running
        raise
    return cmd, proc.returncode, out.decode(), err.decode()
