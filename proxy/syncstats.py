"""What a proxier reports about one sync, the same record for every proxy mode
(the benchmark and the logs read it). Upstream keeps the equivalent figures
in its sync metrics (pkg/proxy/metrics) rather than a return value."""
from __future__ import annotations

from typing import NamedTuple


class SyncStats(NamedTuple):
    """What one sync did: ``full`` or partial, how many service ports exist and
    how many had their chains ``written``, the tool input's ``lines`` and
    ``bytes``, seconds spent listing what the kernel has (full syncs only,
    ``save_seconds``), building the text (``render_seconds``: maps, rendering,
    assembling) and in the tool (``restore_seconds``: iptables-restore or
    ``nft -f``), and ``done_at`` (time.monotonic() when the tool returned)."""

    full: bool
    service_ports: int
    written: int
    lines: int
    bytes: int
    save_seconds: float
    render_seconds: float
    restore_seconds: float
    done_at: float
