"""Running ``nft`` as an asyncio subprocess.

kube-proxy must never block its event loop on the kernel, so every call is an
``asyncio.create_subprocess_exec`` with a timeout. A whole ruleset goes in one
``nft -f -`` call, which the kernel applies as one transaction (all or
nothing). Mirrors the part of upstream's sigs.k8s.io/knftables (Interface:
Run, Check, ListChains/List) that the nftables proxier uses.
"""
from __future__ import annotations

from proxy import command

DEFAULT_TIMEOUT = 60.0


class NftError(Exception):
    """``nft`` exited non-zero (``rc``) or timed out; the message is its stderr."""

    def __init__(self, cmd: list[str], rc: int | None, stderr: str):
        self.cmd, self.rc, self.stderr = cmd, rc, stderr.strip()
        super().__init__(f"{' '.join(cmd[:4])} exited {rc}: {self.stderr[:2000]}")


class Nft:
    """Async wrapper around the ``nft`` binary (``binary``: path or name on PATH).

    ``netns``: run it inside that named network namespace (``ip netns exec``),
    for tests; None is the current namespace. ``timeout``: seconds per call.
    """

    def __init__(self, *, binary: str = "nft", timeout: float = DEFAULT_TIMEOUT, netns: str | None = None):
        self.binary = binary
        self.timeout = timeout
        self.netns = netns

    async def _run(self, args: list[str], stdin: str | None = None) -> str:
        try:
            cmd, rc, out, err = await command.run([self.binary, *args], stdin=stdin, timeout=self.timeout,
                                                  netns=self.netns)
        except FileNotFoundError as e:
            raise NftError([self.binary, *args], None, f"{e.filename or self.binary}: not found") from None
        if rc != 0:
            raise NftError(cmd, rc, err)
        return out

    async def version(self) -> str:
        """``nft --version`` output, e.g. ``nftables v1.0.6 (Lester Gooch #5)``."""
        return (await self._run(["--version"])).strip()

    async def apply(self, text: str) -> None:
        """Apply ``text`` (nft script) as one transaction. Raises NftError with nft's message."""
        await self._run(["-f", "-"], stdin=text)

    async def check(self, text: str) -> None:
        """Validate ``text`` against the kernel without changing anything (``nft -c``)."""
        await self._run(["-c", "-f", "-"], stdin=text)

    async def list_names(self, table: str, *, family: str = "ip") -> tuple[set[str], set[str]]:
        """(chain names, set and map names) of ``family table`` -- empty when it does not
        exist. One terse listing: no rules, no elements are read."""
        return parse_names(await self._run(["-t", "-f", "-"], stdin=f"list chains {family}\nlist sets {family}\n"
                                                                    f"list maps {family}\n"), table)

    async def list_table(self, table: str, *, family: str = "ip") -> str:
        """``nft list table`` text ("" when the table does not exist)."""
        try:
            return await self._run(["list", "table", family, table])
        except NftError as e:
            if "No such file" in e.stderr:
                return ""
            raise


def parse_names(text: str, table: str) -> tuple[set[str], set[str]]:
    """(chains, sets and maps) of ``table`` in ``nft -t list chains/sets/maps`` text output
    (``table ip NAME {`` then one ``<tab>chain|set|map NAME {`` line per object)."""
    chains: set[str] = set()
    sets: set[str] = set()
    current = None
    for line in text.splitlines():
        words = line.split()
        if len(words) == 4 and words[0] == "table" and words[3] == "{":
            current = words[2].strip('"')
        elif current == table and len(words) == 3 and line.startswith("\t") and not line.startswith("\t\t") \
                and words[2] == "{":
            if words[0] == "chain":
                chains.add(words[1].strip('"'))
            elif words[0] in ("set", "map"):
                sets.add(words[1].strip('"'))
    return chains, sets
