"""host-local IPAM plugin: addresses from a static range, leases as files.

Mirrors containernetworking/plugins plugins/ipam/host-local: configuration
``ipam.ranges`` (a list of range sets, each a list of
``{"subnet", "rangeStart", "rangeEnd", "gateway"}``) or the legacy
``ipam.subnet``; optional ``ipam.routes`` and ``ipam.dataDir`` (default
/var/lib/cni/networks). Leases live in ``<dataDir>/<network name>/`` in the
reference plugin's on-disk format (one file per IP holding
``<container id>\\r\\n<ifname>``, ``last_reserved_ip.<n>``, a ``lock`` file
taken with flock), so our plugin and the reference one can share a store.

Run as ``python -m cni.host_local``.
"""
from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import sys
from typing import Iterator

from cni.skel import (ERR_INTERNAL, ERR_INVALID_NETCONF, CmdArgs, CNIError,
                      plugin_main)

DEFAULT_DATA_DIR = "/var/lib/cni/networks"
LINE_BREAK = "\r\n"


class Range:
    """One allocation range: a subnet with first/last usable address and gateway.

    Mirrors host-local's allocator.Range with its defaults: rangeStart is the
    network address + 1, rangeEnd the broadcast - 1, gateway the network + 1.
    """

    def __init__(self, spec: dict) -> None:
        try:
            self.subnet = ipaddress.ip_network(spec["subnet"], strict=False)
        except (KeyError, ValueError) as e:
            raise CNIError(ERR_INVALID_NETCONF, f"invalid range subnet: {e}") from None
        if self.subnet.num_addresses < 4:
            raise CNIError(ERR_INVALID_NETCONF, f"subnet {self.subnet} too small to allocate from")
        net = self.subnet.network_address
        try:
            self.start = ipaddress.ip_address(spec.get("rangeStart") or net + 1)
            self.end = ipaddress.ip_address(spec.get("rangeEnd") or self.subnet.broadcast_address - 1)
            self.gateway = ipaddress.ip_address(spec.get("gateway") or net + 1)
        except ValueError as e:
            raise CNIError(ERR_INVALID_NETCONF, f"invalid range address: {e}") from None
        for ip in (self.start, self.end):
            if ip not in self.subnet:
                raise CNIError(ERR_INVALID_NETCONF, f"{ip} not in network {self.subnet}")

    def candidates(self, after: ipaddress._BaseAddress | None) -> Iterator[ipaddress._BaseAddress]:
        """Usable addresses round-robin starting after ``after`` (host-local's iterator)."""
        size = int(self.end) - int(self.start) + 1
        first = 0
        if after is not None and self.start <= after <= self.end:
            first = int(after) - int(self.start) + 1
        for i in range(size):
            ip = ipaddress.ip_address(int(self.start) + (first + i) % size)
            if ip != self.gateway and ip not in (self.subnet.network_address,
                                                 self.subnet.broadcast_address):
                yield ip


def _ranges(ipam: dict) -> list[Range]:
    if ipam.get("ranges"):
        sets = ipam["ranges"]
        if not isinstance(sets, list) or not all(isinstance(s, list) and s for s in sets):
            raise CNIError(ERR_INVALID_NETCONF, "ipam.ranges must be a list of non-empty lists")
        # One address per range set; within a set the first range with room wins.
        return [Range(s[0]) if len(s) == 1 else _MultiRange(s) for s in sets]
    if ipam.get("subnet"):
        return [Range({k: ipam.get(k) for k in ("subnet", "rangeStart", "rangeEnd", "gateway")})]
    raise CNIError(ERR_INVALID_NETCONF, "no IP ranges specified (ipam.ranges or ipam.subnet)")


class _MultiRange(Range):
    """A range set of several ranges, iterated one after the other."""

    def __init__(self, specs: list[dict]) -> None:
        self.members = [Range(s) for s in specs]
        first = self.members[0]
        self.subnet, self.start, self.end, self.gateway = first.subnet, first.start, first.end, first.gateway

    def candidates(self, after):
        """Candidate IPs of every member range in order; ``after`` (an ip_address) applies to its own range."""
        for r in self.members:
            yield from r.candidates(after if after is not None and after in r.subnet else None)

    def owner(self, ip) -> Range:
        """The member Range whose subnet holds ``ip``; StopIteration if none does."""
        return next(r for r in self.members if ip in r.subnet)


class Store:
    """The lease directory of one network (host-local's disk.Store)."""

    def __init__(self, data_dir: str, network: str) -> None:
        if not network or "/" in network:
            raise CNIError(ERR_INVALID_NETCONF, f"invalid network name {network!r}")
        self.dir = os.path.join(data_dir, network)

    @contextlib.contextmanager
    def locked(self) -> Iterator["Store"]:
        """Hold the store's flock for a whole allocate/release."""
        try:
            os.makedirs(self.dir, mode=0o755, exist_ok=True)
            fd = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise CNIError(ERR_INTERNAL, f"cannot open IPAM store {self.dir}: {e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self
        finally:
            os.close(fd)

    def leases(self) -> dict[str, tuple[str, str]]:
        """IP -> (container id, ifname) for every lease file."""
        out = {}
        for name in os.listdir(self.dir):
            try:
                ipaddress.ip_address(name)
            except ValueError:
                continue
            with open(os.path.join(self.dir, name), newline="") as f:
                parts = f.read().split(LINE_BREAK)
            out[name] = (parts[0].strip(), parts[1].strip() if len(parts) > 1 else "")
        return out

    def reserve(self, ip, container_id: str, ifname: str, range_index: int) -> bool:
        """Create the lease file for ``ip``; False when it is taken."""
        try:
            fd = os.open(os.path.join(self.dir, str(ip)), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", newline="") as f:
            f.write(container_id + LINE_BREAK + ifname)
        with open(os.path.join(self.dir, f"last_reserved_ip.{range_index}"), "w") as f:
            f.write(str(ip))
        return True

    def last_reserved(self, range_index: int):
        """The last IP reserved in range ``range_index`` (an ip_address), or None if never reserved or unreadable."""
        try:
            with open(os.path.join(self.dir, f"last_reserved_ip.{range_index}")) as f:
                return ipaddress.ip_address(f.read().strip())
        except (OSError, ValueError):
            return None

    def release_by_id(self, container_id: str, ifname: str) -> list[str]:
        """Remove every lease of (container id, ifname); returns the freed IPs."""
        freed = []
        for ip, (cid, ifn) in self.leases().items():
            if cid == container_id and (ifn == ifname or not ifn):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(self.dir, ip))
                freed.append(ip)
        return freed


def _store(args: CmdArgs) -> tuple[dict, Store]:
    ipam = args.conf.get("ipam")
    if not isinstance(ipam, dict):
        raise CNIError(ERR_INVALID_NETCONF, "missing ipam section in network configuration")
    return ipam, Store(ipam.get("dataDir") or DEFAULT_DATA_DIR, args.conf.get("name", ""))


def _result(args: CmdArgs, ipam: dict, allocated: list[tuple[ipaddress._BaseAddress, Range]]) -> dict:
    version = args.conf.get("cniVersion", "1.0.0")
    ips = []
    for ip, rng in allocated:
        entry = {"address": f"{ip}/{rng.subnet.prefixlen}", "gateway": str(rng.gateway)}
        if version < "1.0.0":
            entry["version"] = "4" if ip.version == 4 else "6"
        ips.append(entry)
    result = {"cniVersion": version, "ips": ips, "routes": list(ipam.get("routes") or [])}
    if ipam.get("dns"):
        result["dns"] = ipam["dns"]
    return result


def cmd_add(args: CmdArgs) -> dict:
    """Allocate one address per range set; a repeated ADD returns the same leases."""
    ipam, store = _store(args)
    ranges = _ranges(ipam)
    with store.locked():
        leases = store.leases()
        allocated = []
        for index, rng in enumerate(ranges):
            mine = [ipaddress.ip_address(ip) for ip, (cid, ifn) in leases.items()
                    if cid == args.container_id and ifn == args.ifname
                    and ipaddress.ip_address(ip) in rng.subnet]
            if mine:
                allocated.append((mine[0], rng))
                continue
            for ip in rng.candidates(store.last_reserved(index)):
                if str(ip) not in leases and store.reserve(ip, args.container_id, args.ifname, index):
                    owner = rng.owner(ip) if isinstance(rng, _MultiRange) else rng
                    allocated.append((ip, owner))
                    break
            else:
                store.release_by_id(args.container_id, args.ifname)
                raise CNIError(ERR_INTERNAL, f"no IP addresses available in range set {rng.subnet}")
    return _result(args, ipam, allocated)


def cmd_del(args: CmdArgs) -> None:
    """Free the container's leases; freeing nothing is success (DEL is idempotent)."""
    _, store = _store(args)
    if not os.path.isdir(store.dir):
        return None
    with store.locked():
        store.release_by_id(args.container_id, args.ifname)
    return None


def cmd_check(args: CmdArgs) -> None:
    """Fail unless the container holds a lease in this network."""
    _, store = _store(args)
    if os.path.isdir(store.dir):
        with store.locked():
            if any(cid == args.container_id and ifn == args.ifname
                   for cid, ifn in store.leases().values()):
                return None
    raise CNIError(ERR_INTERNAL, f"host-local: failed to find address for container {args.container_id}")


def main() -> int:
    """Entry point of ``python -m cni.host_local``."""
    return plugin_main(add=cmd_add, delete=cmd_del, check=cmd_check,
                       about="kubeling host-local IPAM plugin")


if __name__ == "__main__":
    sys.exit(main())
