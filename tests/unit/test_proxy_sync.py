"""Sync scheduling (BoundedFrequencyRunner) and the Proxier's sync with injected
clock, iptables and conntrack fakes: no root, no kernel."""
from __future__ import annotations

import asyncio
import math

import pytest

from proxy import metrics
from proxy.bounded_frequency_runner import BoundedFrequencyRunner
from proxy.iptables.proxier import Proxier
from proxy.iptables.rules import JUMP_RULES, RulesConfig
from proxy.iptables.runner import IptablesError


class FakeClock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _noop() -> None:
    pass


def test_schedule_coalesces_within_min_interval():
    """Requests inside min-sync-period after a sync wait for its end; with no
    request the next sync is sync-period after the last one."""
    clock = FakeClock()
    r = BoundedFrequencyRunner("t", _noop, min_interval=1.0, max_interval=30.0, clock=clock)
    assert r.next_run_at() == 130.0  # nothing asked: periodic sync only
    r.run()
    assert r.next_run_at() == -math.inf  # never ran: at once
    r.mark_ran(100.0)
    assert r.next_run_at() == 130.0
    clock.now = 100.2
    r.run()
    r.run()
    assert r.next_run_at() == 101.0  # coalesced, bounded by min interval
    r.mark_ran(101.0)
    assert r.next_run_at() == 131.0


def test_schedule_retry_is_bounded_by_min_interval():
    clock = FakeClock()
    r = BoundedFrequencyRunner("t", _noop, min_interval=2.0, max_interval=30.0, clock=clock)
    r.mark_ran(100.0)
    r.retry_after(0.5)
    assert r.next_run_at() == 102.0
    clock.now = 105.0
    r.retry_after(3.0)
    assert r.next_run_at() == 102.0  # the earlier retry still stands
    r.mark_ran(105.0)
    assert r.next_run_at() == 135.0


def test_runner_rejects_bad_intervals():
    with pytest.raises(ValueError):
        BoundedFrequencyRunner("t", _noop, min_interval=5.0, max_interval=1.0)


async def test_loop_coalesces_bursts_and_retries_failures():
    """A burst of change events gives one sync now and one after min interval;
    a failed sync is retried without a new event."""
    calls: list[float] = []
    fail = {"next": False}
    loop = asyncio.get_running_loop()

    async def sync() -> None:
        calls.append(loop.time())
        if fail["next"]:
            fail["next"] = False
            raise IptablesError(["iptables-restore"], 1, "boom")

    r = BoundedFrequencyRunner("t", sync, min_interval=0.2, max_interval=30.0, retry_interval=0.1)
    task = asyncio.create_task(r.loop())
    try:
        for _ in range(5):
            r.run()
        await _until(lambda: len(calls) >= 1)
        for _ in range(5):
            r.run()
            await asyncio.sleep(0.01)
        await _until(lambda: len(calls) >= 2)
        await asyncio.sleep(0.05)
        assert len(calls) == 2 and calls[1] - calls[0] >= 0.19
        fail["next"] = True
        r.run()
        await _until(lambda: len(calls) >= 4)  # the failed one and its retry
        assert calls[3] - calls[2] >= 0.19
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _until(cond, timeout: float = 10.0) -> None:
    """Poll ``cond`` (a loaded CI machine may be slow to run the loop) up to ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_loop_syncs_periodically_without_events():
    calls = []

    async def sync() -> None:
        calls.append(1)

    r = BoundedFrequencyRunner("t", sync, min_interval=0.0, max_interval=0.1)
    task = asyncio.create_task(r.loop())
    await asyncio.sleep(0.35)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert 2 <= len(calls) <= 4


class FakeIptables:
    """Records what the proxier asks of iptables; can be told to fail restores."""

    def __init__(self):
        self.restores: list[str] = []
        self.rules: set[tuple] = set()
        self.inserted: list[tuple] = []
        self.fail_restore = False
        self.nat_chains = {"PREROUTING", "OUTPUT", "POSTROUTING", "INPUT"}

    async def list_chains(self, table: str) -> set[str]:
        return set(self.nat_chains)

    async def restore(self, text: str, *, noflush: bool = True) -> None:
        assert noflush
        if self.fail_restore:
            raise IptablesError(["iptables-restore"], 1, "line 7: RULE_APPEND failed")
        self.restores.append(text)
        self.nat_chains |= {line[1:].split()[0] for line in text.split("*nat")[1].splitlines()
                            if line.startswith(":")}
        self.nat_chains -= {line.split()[1] for line in text.splitlines() if line.startswith("-X ")}

    async def ensure_rule(self, table: str, chain: str, args: list[str]) -> bool:
        key = (table, chain, tuple(args))
        if key in self.rules:
            return True
        self.rules.add(key)
        self.inserted.append(key)
        return False


class FakeConntrack:
    def __init__(self):
        self.calls: list[tuple] = []

    async def clear_entries_for_ip(self, ip: str, protocol: str = "udp") -> None:
        self.calls.append(("ip", ip, protocol))

    async def clear_entries_for_nat(self, origin: str, dest: str, protocol: str = "udp") -> None:
        self.calls.append(("nat", origin, dest, protocol))

    async def clear_entries_for_port(self, port: int, protocol: str = "udp") -> None:
        self.calls.append(("port", port, protocol))

    async def clear_entries_for_port_nat(self, port: int, dest: str, protocol: str = "udp") -> None:
        self.calls.append(("port-nat", port, dest, protocol))


DNS = {"metadata": {"namespace": "kube-system", "name": "dns"},
       "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}}


def dns_endpoints(*ips: str) -> dict:
    return {"metadata": {"namespace": "kube-system", "name": "dns"},
            "subsets": [{"addresses": [{"ip": ip} for ip in ips],
                         "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}]}


def make_proxier(state: dict, **kw) -> tuple[Proxier, FakeIptables, FakeConntrack]:
    ipt, ct = FakeIptables(), FakeConntrack()
    p = Proxier(list_services=lambda: state["svcs"], list_endpoints=lambda: state["eps"],
                config=RulesConfig(cluster_cidr="10.244.0.0/16"), iptables=ipt, conntrack=ct, **kw)
    return p, ipt, ct


async def test_sync_is_one_restore_and_jumps_once():
    """Each sync is exactly one iptables-restore; jumps from built-in chains are
    inserted once, and checked again only after jump_check_period."""
    state = {"svcs": [DNS], "eps": [dns_endpoints("10.244.0.7")]}
    p, ipt, _ = make_proxier(state)
    assert not p.healthy
    before = _hist_count()
    await p.sync_proxy_rules()
    await p.sync_proxy_rules()
    assert p.healthy
    assert len(ipt.restores) == 2
    # Nothing changed: the second (partial) sync rewrites the fixed chains only.
    assert ":KUBE-SVC-" in ipt.restores[0] and ":KUBE-SVC-" not in ipt.restores[1]
    assert len(ipt.inserted) == len(JUMP_RULES)
    assert ("nat", "PREROUTING", ("-m", "comment", "--comment", "kubernetes service portals",
                                  "-j", "KUBE-SERVICES")) in ipt.rules
    assert _hist_count() == before + 2
    ipt.rules.clear()  # someone removed our jumps: repaired on the next periodic check
    await p.sync_proxy_rules()
    assert len(ipt.inserted) == len(JUMP_RULES)
    p.jump_check_period = 0.0
    await p.sync_proxy_rules()
    assert len(ipt.inserted) == 2 * len(JUMP_RULES)


async def test_removed_service_chains_are_deleted_next_sync():
    state = {"svcs": [DNS], "eps": [dns_endpoints("10.244.0.7")]}
    p, ipt, _ = make_proxier(state)
    await p.sync_proxy_rules()
    svc_chains = {c for c in ipt.nat_chains if c.startswith(("KUBE-SVC-", "KUBE-SEP-"))}
    assert len(svc_chains) == 2
    state["svcs"] = []
    await p.sync_proxy_rules()
    assert all(f"-X {c}" in ipt.restores[-1] for c in svc_chains)
    assert not {c for c in ipt.nat_chains if c.startswith(("KUBE-SVC-", "KUBE-SEP-"))}


async def test_failed_restore_raises_and_counts():
    state = {"svcs": [DNS], "eps": []}
    p, ipt, _ = make_proxier(state)
    ipt.fail_restore = True
    before = metrics.IPTABLES_RESTORE_FAILURES._value.get()
    with pytest.raises(IptablesError, match="RULE_APPEND"):
        await p.sync_proxy_rules()
    assert not p.healthy and not ipt.inserted
    assert metrics.IPTABLES_RESTORE_FAILURES._value.get() == before + 1
    ipt.fail_restore = False
    await p.sync_proxy_rules()
    assert p.healthy


async def test_udp_conntrack_flushed_for_removed_endpoints_and_first_endpoint():
    """Upstream's rules: a removed UDP endpoint's NAT flows are deleted; when a UDP
    service goes from no endpoints to some, flows to its IP are deleted."""
    state = {"svcs": [DNS], "eps": [dns_endpoints("10.244.0.7", "10.244.0.8")]}
    p, _, ct = make_proxier(state)
    await p.sync_proxy_rules()
    assert ct.calls == []
    state["eps"] = [dns_endpoints("10.244.0.8")]
    await p.sync_proxy_rules()
    assert ct.calls == [("nat", "10.96.0.10", "10.244.0.7", "udp")]
    state["eps"] = []
    await p.sync_proxy_rules()
    state["eps"] = [dns_endpoints("10.244.0.9")]
    ct.calls.clear()
    await p.sync_proxy_rules()
    assert ct.calls == [("ip", "10.96.0.10", "udp")]


async def test_udp_conntrack_for_removed_service_and_node_port():
    """A removed UDP service's cluster IP is flushed; a UDP node port is flushed by port
    when it gets its first endpoint and by port + endpoint when one goes."""
    np = {"metadata": {"namespace": "default", "name": "np"},
          "spec": {"clusterIP": "10.96.0.11", "type": "NodePort",
                   "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}]}}

    def np_eps(*ips):
        return {"metadata": {"namespace": "default", "name": "np"},
                "subsets": [{"addresses": [{"ip": ip} for ip in ips],
                             "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}]}

    state = {"svcs": [DNS, np], "eps": [dns_endpoints("10.244.0.7"), np_eps()]}
    p, _, ct = make_proxier(state)
    await p.sync_proxy_rules()
    state["svcs"], state["eps"] = [np], [np_eps("10.244.0.8", "10.244.0.9")]
    await p.sync_proxy_rules()
    assert sorted(ct.calls) == sorted([("nat", "10.96.0.10", "10.244.0.7", "udp"), ("ip", "10.96.0.10", "udp"),
                                       ("ip", "10.96.0.11", "udp"), ("port", 30053, "udp")])
    ct.calls.clear()
    state["eps"] = [np_eps("10.244.0.9")]
    await p.sync_proxy_rules()
    assert ct.calls == [("nat", "10.96.0.11", "10.244.0.8", "udp"), ("port-nat", 30053, "10.244.0.8", "udp")]


def web(i: int) -> dict:
    return {"metadata": {"namespace": "default", "name": f"web{i}"},
            "spec": {"clusterIP": f"10.96.1.{i}", "ports": [{"name": "http", "port": 80}]}}


def web_eps(i: int, *ips: str) -> dict:
    return {"metadata": {"namespace": "default", "name": f"web{i}"},
            "subsets": [{"addresses": [{"ip": ip} for ip in ips], "ports": [{"name": "http", "port": 8080}]}]}


async def test_partial_sync_writes_only_changed_service_chains():
    """Upstream's MinimizeIPTablesRestore: after the first (full) sync, a sync rewrites
    KUBE-SERVICES but declares and fills only the chains of the changed service port;
    a removed endpoint's chain is deleted from what the last sync applied, without iptables-save."""
    state = {"svcs": [web(1), web(2)], "eps": [web_eps(1, "10.244.0.2", "10.244.0.3"), web_eps(2, "10.244.0.4")]}
    p, ipt, _ = make_proxier(state, full_sync_period=3600)
    first = await p.sync_proxy_rules()
    assert first.full and first.written == 2 and first.service_ports == 2
    svc1 = [c for c in ipt.nat_chains if c.startswith("KUBE-SVC-")]
    state["eps"] = [web_eps(1, "10.244.0.2"), state["eps"][1]]  # a new object, as informers do
    saves = []
    orig = ipt.list_chains
    ipt.list_chains = lambda t: saves.append(t) or orig(t)
    second = await p.sync_proxy_rules()
    text = ipt.restores[-1]
    assert not second.full and second.written == 1 and not saves
    nat = text.split("*nat\n")[1]
    declared = [line[1:].split()[0] for line in nat.splitlines() if line.startswith(":")]
    # Fixed chains whose rules are unchanged (KUBE-SERVICES still lists the same
    # two services) are left alone too: only web1's SVC and SEP chains and the stale SEP chain.
    assert len(declared) == 3 and declared[0] in svc1 and all(c.startswith("KUBE-SEP-") for c in declared[1:])
    assert "10.244.0.4" not in text  # web2 untouched
    assert text.count("\n-X KUBE-SEP-") == 1  # 10.244.0.3's chain
    assert "-A KUBE-SERVICES" not in text and ":KUBE-FORWARD" not in text
    state["svcs"], state["eps"] = [*state["svcs"], web(3)], [*state["eps"], web_eps(3, "10.244.0.5")]
    third = await p.sync_proxy_rules()
    nat = ipt.restores[-1].split("*nat\n")[1]
    assert third.written == 1 and ":KUBE-SERVICES - [0:0]" in nat and nat.count("-j KUBE-SVC-") == 3
    assert ":KUBE-POSTROUTING" not in nat


async def test_full_sync_every_period_and_after_failure():
    state = {"svcs": [web(1)], "eps": [web_eps(1, "10.244.0.2")]}
    p, ipt, _ = make_proxier(state, full_sync_period=3600)
    assert (await p.sync_proxy_rules()).full
    assert not (await p.sync_proxy_rules()).full
    ipt.fail_restore = True
    with pytest.raises(IptablesError):
        await p.sync_proxy_rules()
    ipt.fail_restore = False
    assert (await p.sync_proxy_rules()).full
    p.full_sync_period = 0.0
    assert (await p.sync_proxy_rules()).full
    p2, _, _ = make_proxier(state, minimize=False, full_sync_period=3600)
    await p2.sync_proxy_rules()
    assert (await p2.sync_proxy_rules()).full


async def test_unchanged_objects_are_not_reparsed():
    """Parsing is cached by object identity (informers replace objects on change)."""
    state = {"svcs": [web(1)], "eps": [web_eps(1, "10.244.0.2")]}
    p, _, _ = make_proxier(state)
    await p.sync_proxy_rules()
    rules_before = dict(p._applied_rules)
    await p.sync_proxy_rules()
    assert all(p._applied_rules[k] is v for k, v in rules_before.items())
    state["eps"] = [web_eps(1, "10.244.0.2")]  # equal content, new object: same rendering kept
    await p.sync_proxy_rules()
    assert all(p._applied_rules[k] is v for k, v in rules_before.items())


async def test_node_ips_callable_limits_node_ports():
    state = {"svcs": [web(1)], "eps": [web_eps(1, "10.244.0.2")]}
    async def node_ips():
        return ["10.250.0.12"]

    p, ipt, _ = make_proxier(state, node_ips=node_ips)
    await p.sync_proxy_rules()
    assert "-d 10.250.0.12 -j KUBE-NODEPORTS" in ipt.restores[-1]
    assert "--dst-type LOCAL -j KUBE-NODEPORTS" not in ipt.restores[-1]


def _hist_count() -> float:
    for metric in metrics.SYNC_PROXY_RULES_LATENCY.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return sample.value
    return 0.0


def test_parse_nft_chains():
    """Chain names per table from `nft list chains ip` (what list_chains reads instead of iptables-save)."""
    from proxy.iptables.runner import parse_nft_chains
    text = ("table ip filter {\n\tchain KUBE-SERVICES {\n\t}\n\tchain INPUT {\n"
            "\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n"
            "table ip nat {\n\tchain KUBE-SEP-ABC {\n\t}\n\tchain POSTROUTING {\n"
            "\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t}\n}\n")
    assert parse_nft_chains(text) == {"filter": {"KUBE-SERVICES", "INPUT"}, "nat": {"KUBE-SEP-ABC", "POSTROUTING"}}
    assert parse_nft_chains("") == {}
