"""The log between the gRPC services and the state machine, for a single member.

Stands where etcd's raftNode (server/etcdserver/raft.go) and raft.Node stand:
proposals become log entries, entries are persisted to the WAL, committed
entries are handed to ``apply`` in index order. With one voter an entry is
committed as soon as it is durable locally, so no Raft messages are needed;
the 3-member cluster replaces this class with a Raft-driven node offering the
same ``propose`` / ``run`` / ``stop`` surface.

Group commit: proposals that arrive while a save is in flight are batched into
the next save, so N concurrent writers share one fdatasync.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from etcdlite.wal.wal import WAL, Entry, HardState

log = logging.getLogger(__name__)


class NodeStoppedError(Exception):
    """The node stopped (or its WAL failed) before the proposal was committed."""


class SingleNode:
    """A one-voter log over ``wal``.

    ``term`` is the current term, ``last_index`` the index of the last entry
    already in the WAL (and applied), ``member_id`` this member's ID (the leader).
    ``apply(entry)`` is called for each committed entry, in index order, on the
    event loop.
    """

    def __init__(self, wal: WAL, *, term: int, last_index: int, member_id: int,
                 apply: Callable[[Entry], None]) -> None:
        self.wal = wal
        self.term = term
        self.member_id = member_id
        self.last_index = last_index
        self.applied_index = last_index
        self._apply = apply
        self._proposals: list[tuple[bytes, asyncio.Future]] = []
        self._wake = asyncio.Event()
        self._stopped = False
        self.failure: BaseException | None = None

    @property
    def leader(self) -> int:
        """The member ID this node believes leads (itself)."""
        return self.member_id

    async def propose(self, data: bytes) -> None:
        """Append ``data`` as an entry; returns once it is durable and applied.

        Raises NodeStoppedError if the node stops or the WAL fails first.
        """
        if self._stopped:
            raise NodeStoppedError()
        fut = asyncio.get_running_loop().create_future()
        self._proposals.append((data, fut))
        self._wake.set()
        await fut

    async def run(self) -> None:
        """Persist and apply proposals until ``stop``; a WAL error ends the node."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._proposals = self._proposals, []
            if not batch:
                if self._stopped:
                    return
                continue
            first = self.last_index + 1
            entries = [Entry(self.term, first + i, data) for i, (data, _) in enumerate(batch)]
            try:
                await self.wal.save(entries)
            except BaseException as exc:
                # A write we cannot make durable must never be acknowledged; like
                # etcd (which panics), this member stops serving writes.
                log.error("WAL save failed, stopping the node: %r", exc)
                self.failure = exc
                self._fail(batch)
                self._stopped = True
                self._fail(self._proposals)
                raise
            self.last_index = entries[-1].index
            for entry, (_, fut) in zip(entries, batch):
                try:
                    self._apply(entry)
                finally:
                    self.applied_index = entry.index
                    if not fut.done():
                        fut.set_result(None)

    def stop(self) -> None:
        """Refuse new proposals; ``run`` returns after persisting the queued ones."""
        self._stopped = True
        self._wake.set()

    def hard_state(self) -> HardState:
        """The state to persist: term, vote (self), commit (= last index)."""
        return HardState(self.term, self.member_id, self.last_index)

    @staticmethod
    def _fail(batch: list[tuple[bytes, asyncio.Future]]) -> None:
        for _, fut in batch:
            if not fut.done():
                fut.set_exception(NodeStoppedError())
