"""Golden-transcript tests of the Raft core, after etcd-io/raft's
interaction tests (testdata/*.txt driven by rafttest/interaction_env*.go).

Each tests/unit/raft_scenarios/*.txt holds blocks of

    command args
    ----
    expected output

and the test replays the commands on a fault-free Simulation and compares
the printed Ready batches and messages. Regenerate after an intended
behaviour change with RAFT_REWRITE=1 and review the diff.

Commands: add-nodes N [pre-vote=false] [check-quorum=false],
campaign ID, propose ID DATA, tick ID [N], tick-all [N], stabilize,
isolate ID, heal, compact ID, read-index ID CTX, transfer-leadership FROM TO,
crash ID, restart ID, status ID, log ID.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from etcdlite.raft import ProposalDropped
from etcdlite.raft.describe import describe_entry
from etcdlite.raft.simulate import Faults, Simulation

SCENARIOS = Path(__file__).parent / "raft_scenarios"
REWRITE = os.environ.get("RAFT_REWRITE") == "1"
QUIET = Faults(loss=0, dup=0, partition=0, heal=0, crash=0, restart=0, compact=0,
               propose=0, tick=0)


def parse(text: str) -> list[tuple[str, list[str]]]:
    """Blocks of (command, expected output lines); '#' lines are comments."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        if i >= len(lines) or lines[i].strip() != "----":
            raise ValueError(f"line {i}: command {line!r} lacks a ---- separator")
        i += 1
        out = []
        while i < len(lines) and lines[i].strip():
            out.append(lines[i].rstrip())
            i += 1
        blocks.append((line, out))
    return blocks


class Interaction:
    """Runs scenario commands against a Simulation and returns printed lines."""

    def __init__(self) -> None:
        self.sim: Simulation | None = None

    def run(self, cmd: str) -> list[str]:
        name, *args = cmd.split()
        out: list[str] = []
        if name == "add-nodes":
            opts = dict(a.split("=") for a in args[1:])
            self.sim = Simulation(seed=0, n=int(args[0]), faults=QUIET,
                                  pre_vote=opts.get("pre-vote", "true") == "true",
                                  check_quorum=opts.get("check-quorum", "true") == "true")
            return ["ok"]
        sim = self.sim
        sim.trace = out
        node = (lambda i: sim.nodes[int(i)].node)
        if name == "campaign":
            node(args[0]).campaign()
        elif name == "propose":
            try:
                node(args[0]).propose(args[1].encode())
            except ProposalDropped as e:
                out.append(f"raft proposal dropped: {e}")
        elif name == "tick":
            for _ in range(int(args[1]) if len(args) > 1 else 1):
                node(args[0]).tick()
        elif name == "tick-all":
            for _ in range(int(args[0]) if args else 1):
                for i in sim.ids:
                    if sim.nodes[i].node is not None:
                        sim.nodes[i].node.tick()
        elif name == "stabilize":
            self.stabilize(out)
        elif name == "isolate":
            sim.isolate(int(args[0]))
        elif name == "heal":
            sim.cut.clear()
        elif name == "compact":
            sim.compact(int(args[0]))
            st = sim.nodes[int(args[0])].storage
            out.append(f"snapshot at {st.snapshot().metadata.index}, first index {st.first_index()}")
        elif name == "read-index":
            node(args[0]).read_index(args[1].encode())
        elif name == "transfer-leadership":
            node(args[0]).transfer_leadership(int(args[1]))
        elif name == "crash":
            sim.crash(int(args[0]))
        elif name == "restart":
            sim._start(int(args[0]))
        elif name == "status":
            s = node(args[0]).status()
            out.append(f"{s.id}: {s.state.value} term={s.term} vote={s.vote} lead={s.lead} "
                       f"commit={s.commit} applied={s.applied}")
            out += [f"  progress {i}: match={m} next={n} {st.value}"
                    for i, (m, n, st) in sorted(s.progress.items())]
        elif name == "log":
            r = node(args[0]).raft
            out += [describe_entry(e) for e in r.log.all_entries()] or ["(empty)"]
        else:
            raise ValueError(f"unknown command {name!r}")
        if name not in ("stabilize", "status", "log"):
            sim.drain()  # Ready batches a command produced are part of its output
        sim.check()
        sim.trace = None
        return out or ["ok"]

    def stabilize(self, out: list[str]) -> None:
        sim = self.sim
        sim.drain()
        for _ in range(100):
            if not sim.queue:
                return
            batch, sim.queue = sim.queue, []
            for to in sorted({m.to for m in batch}):
                out.append(f"> {to} receiving messages")
                for m in batch:
                    if m.to == to:
                        sim.deliver(m, lossy=False)
            sim.drain()
            sim.check()
        raise AssertionError("stabilize did not settle")


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.txt")), ids=lambda p: p.stem)
def test_scenario(path: Path):
    """Replays one transcript; the printed output must match the file."""
    env = Interaction()
    blocks = parse(path.read_text())
    got = [(cmd, env.run(cmd)) for cmd, _ in blocks]
    if REWRITE:
        text = "".join(f"{cmd}\n----\n" + "\n".join(out) + "\n\n" for cmd, out in got)
        comments = [ln for ln in path.read_text().splitlines() if ln.startswith("#")]
        header = "\n".join(comments[:_header_len(path)]) + "\n\n" if comments else ""
        path.write_text(header + text)
        return
    for (cmd, want), (_, have) in zip(blocks, got):
        assert have == want, f"{path.name}: {cmd}"


def _header_len(path: Path) -> int:
    n = 0
    for ln in path.read_text().splitlines():
        if not ln.startswith("#"):
            break
        n += 1
    return n
