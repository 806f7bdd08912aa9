"""Human-readable one-line forms of Raft messages, entries and Ready batches;
mirrors etcd-io/raft util.go (DescribeMessage, DescribeEntry, DescribeReady).

Used by the scenario transcripts in tests and for debug logging in the server.
"""
from __future__ import annotations

from proto.raftpb import raft_pb2 as pb


def describe_entry(e: pb.Entry) -> str:
    """``term/index Type "data"``, e.g. ``1/2 EntryNormal "put x"``."""
    data = e.Data.decode("utf-8", "backslashreplace")
    return f'{e.Term}/{e.Index} {pb.EntryType.Name(e.Type)} "{data}"'


def describe_entries(ents) -> str:
    return "[" + ", ".join(describe_entry(e) for e in ents) + "]"


def describe_snapshot(s: pb.Snapshot) -> str:
    m = s.metadata
    return f"Index:{m.index} Term:{m.term} Voters:{list(m.conf_state.voters)}"


def describe_message(m: pb.Message) -> str:
    """``from->to Type Term:t Log:logTerm/index ...`` like DescribeMessage."""
    out = (f"{getattr(m, 'from')}->{m.to} {pb.MessageType.Name(m.type)} "
           f"Term:{m.term} Log:{m.logTerm}/{m.index}")
    if m.reject:
        out += f" Rejected (Hint: {m.rejectHint})"
    if m.commit:
        out += f" Commit:{m.commit}"
    if m.context:
        out += f" Context:{m.context.decode('utf-8', 'backslashreplace')}"
    if m.entries:
        out += f" Entries:{describe_entries(m.entries)}"
    if m.HasField("snapshot") and m.snapshot.metadata.index:
        out += f" Snapshot: {describe_snapshot(m.snapshot)}"
    return out


def describe_ready(rd, *, indent: str = "") -> list[str]:
    """Lines describing a rawnode.Ready batch (DescribeReady)."""
    lines = [f"Ready MustSync={str(rd.must_sync).lower()}:"]
    if rd.soft_state is not None:
        lines.append(f"State:{rd.soft_state.state.value} Lead:{rd.soft_state.lead}")
    if rd.hard_state is not None:
        hs = rd.hard_state
        lines.append(f"HardState Term:{hs.term} Vote:{hs.vote} Commit:{hs.commit}")
    if rd.entries:
        lines.append("Entries:")
        lines += [describe_entry(e) for e in rd.entries]
    if rd.snapshot is not None:
        lines.append(f"Snapshot {describe_snapshot(rd.snapshot)}")
    if rd.committed_entries:
        lines.append("CommittedEntries:")
        lines += [describe_entry(e) for e in rd.committed_entries]
    if rd.messages:
        lines.append("Messages:")
        lines += [describe_message(m) for m in rd.messages]
    if rd.read_states:
        lines.append("ReadStates:")
        lines += [f"Index:{r.index} Ctx:{r.request_ctx.decode('utf-8', 'backslashreplace')}"
                  for r in rd.read_states]
    return [indent + x for x in lines]
