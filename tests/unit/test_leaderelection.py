"""Leader election timing and lock semantics (kubeling.client.leaderelection)
against an in-memory Lease store with resourceVersions and a fake clock."""
from __future__ import annotations

import argparse
import asyncio
import time

import pytest

from kubeling.client import ApiError
from kubeling.client.leaderelection import (DEFAULT_LEASE_DURATION, DEFAULT_RENEW_DEADLINE,
                                            DEFAULT_RETRY_PERIOD, LeaderElectionLost, LeaderElectionRecord,
                                            LeaderElector, add_flags, validate_timing)


class FakeLeaseStore:
    """One Lease spec with a resourceVersion, shared by several candidates' locks."""

    def __init__(self):
        self.record: LeaderElectionRecord | None = None
        self.rv = 0
        self.fail_updates = False
        self.writes = 0


class FakeLock:
    """A ResourceLock over FakeLeaseStore; updates are conditional on the rv last seen."""

    def __init__(self, store: FakeLeaseStore, identity: str):
        self.store = store
        self.identity = identity
        self.seen_rv: int | None = None
        self.events: list[str] = []

    async def get(self) -> LeaderElectionRecord:
        if self.store.record is None:
            raise ApiError(404, {"reason": "NotFound", "message": "not found"})
        self.seen_rv = self.store.rv
        return LeaderElectionRecord(**vars(self.store.record))

    async def create(self, record: LeaderElectionRecord) -> None:
        if self.store.record is not None:
            raise ApiError(409, {"reason": "AlreadyExists", "message": "exists"})
        self._write(record)

    async def update(self, record: LeaderElectionRecord) -> None:
        if self.store.fail_updates:
            raise ApiError(500, {"reason": "InternalError", "message": "etcd down"})
        if self.seen_rv != self.store.rv:
            raise ApiError(409, {"reason": "Conflict", "message": "modified"})
        self._write(record)

    def _write(self, record: LeaderElectionRecord) -> None:
        self.store.rv += 1
        self.store.writes += 1
        self.seen_rv = self.store.rv
        self.store.record = LeaderElectionRecord(**vars(record))

    def describe(self) -> str:
        return "kube-system/test"

    def record_event(self, message: str) -> None:
        self.events.append(f"{self.identity} {message}")


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def elector(store, identity, clock, **kw):
    kw = {"lease_duration": 15, "renew_deadline": 10, "retry_period": 2, **kw}
    return LeaderElector(FakeLock(store, identity), clock=clock, **kw)


async def test_first_acquire_of_missing_lease_is_immediate():
    store, clock = FakeLeaseStore(), Clock()
    a = elector(store, "a", clock)
    assert await a.try_acquire_or_renew()
    assert a.is_leader() and store.record.holder_identity == "a"
    assert store.record.lease_duration_seconds == 15 and store.record.leader_transitions == 0
    assert store.record.acquire_time and store.record.renew_time


async def test_held_lease_is_not_taken_before_observed_expiry_even_with_ancient_renew_time():
    store, clock = FakeLeaseStore(), Clock()
    # The holder's renewTime is far in the past by our wall clock: skew must not matter.
    store.record = LeaderElectionRecord("other", 15, "2000-01-01T00:00:00.000000Z",
                                        "2000-01-01T00:00:00.000000Z", 3)
    b = elector(store, "b", clock)
    assert not await b.try_acquire_or_renew()
    assert b.get_leader() == "other"
    clock.t += 14.9
    assert not await b.try_acquire_or_renew()
    clock.t += 0.2  # 15.1 s after we first saw this record unchanged
    assert await b.try_acquire_or_renew()
    assert store.record.holder_identity == "b" and store.record.leader_transitions == 4


async def test_renewals_reset_the_standbys_observed_time():
    store, clock = FakeLeaseStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    for _ in range(10):  # 10 x 10 s: a renews each time, b never sees an expired lease
        clock.t += 10
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()
    acquire_time = store.record.acquire_time
    clock.t += 16  # a stopped renewing
    assert await b.try_acquire_or_renew()
    assert store.record.holder_identity == "b" and store.record.leader_transitions == 1
    assert store.record.acquire_time != acquire_time
    # a's optimistic renew conflicts; the slow path sees b's valid lease: a is not leader any more.
    assert not await a.try_acquire_or_renew()
    assert not a.is_leader() and a.get_leader() == "b"


async def test_leader_keeps_acquire_time_and_transitions_on_renew():
    store, clock = FakeLeaseStore(), Clock()
    a = elector(store, "a", clock)
    await a.try_acquire_or_renew()
    first = LeaderElectionRecord(**vars(store.record))
    time.sleep(0.002)
    clock.t += 2
    assert await a.try_acquire_or_renew()
    assert store.record.acquire_time == first.acquire_time
    assert store.record.renew_time >= first.renew_time
    assert store.record.leader_transitions == 0


async def test_release_clears_holder_and_standby_takes_over_at_once():
    store, clock = FakeLeaseStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    assert await a.release()
    assert store.record.holder_identity == "" and store.record.lease_duration_seconds == 1
    assert not a.is_leader()
    assert await b.try_acquire_or_renew()  # no wait: the lease has no holder
    assert store.record.leader_transitions == 1


async def test_only_one_of_two_racing_candidates_wins_an_expired_lease():
    store, clock = FakeLeaseStore(), Clock()
    store.record = LeaderElectionRecord("dead", 15, "", "", 0)
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert not await a.try_acquire_or_renew() and not await b.try_acquire_or_renew()
    clock.t += 16
    # Both read the expired record, then both write: the second write conflicts.
    rec_a, rec_b = await a.lock.get(), await b.lock.get()
    assert rec_a == rec_b
    await a.lock.update(LeaderElectionRecord("a", 15, "", "", 1))
    with pytest.raises(ApiError) as e:
        await b.lock.update(LeaderElectionRecord("b", 15, "", "", 1))
    assert e.value.code == 409
    # Through the elector: whoever comes second sees a fresh record held by the winner.
    assert not await b.try_acquire_or_renew() and b.get_leader() == "a"


async def test_api_errors_count_as_failed_attempts():
    store, clock = FakeLeaseStore(), Clock()
    a = elector(store, "a", clock)
    await a.try_acquire_or_renew()
    store.fail_updates = True
    clock.t += 2
    assert not await a.try_acquire_or_renew()


async def test_run_acquires_runs_work_and_releases_on_cancel():
    store = FakeLeaseStore()
    a = LeaderElector(FakeLock(store, "a"), lease_duration=1.0, renew_deadline=0.6, retry_period=0.1)
    started = asyncio.Event()

    async def work():
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.ensure_future(a.run(work))
    await asyncio.wait_for(started.wait(), 2)
    assert a.leading.is_set() and a.lock.events == ["a became leader"]
    writes = store.writes
    await asyncio.sleep(0.35)
    assert store.writes >= writes + 2  # renewing every retry period
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store.record.holder_identity == "" and store.record.lease_duration_seconds == 1


async def test_run_raises_lost_when_renewals_fail_past_the_deadline():
    store = FakeLeaseStore()
    a = LeaderElector(FakeLock(store, "a"), lease_duration=1.0, renew_deadline=0.5, retry_period=0.1)
    cancelled = asyncio.Event()

    async def work():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = asyncio.ensure_future(a.run(work))
    await asyncio.wait_for(a.leading.wait(), 2)
    store.fail_updates = True
    t0 = time.monotonic()
    with pytest.raises(LeaderElectionLost):
        await asyncio.wait_for(task, 3)
    assert 0.4 < time.monotonic() - t0 < 1.5
    assert cancelled.is_set() and not a.leading.is_set()
    assert a.lock.events == ["a became leader", "a stopped leading"]


async def test_run_standby_waits_then_takes_over_after_leader_stops():
    store = FakeLeaseStore()
    kw = {"lease_duration": 1.0, "renew_deadline": 0.6, "retry_period": 0.1, "release_on_cancel": False}
    a, b = LeaderElector(FakeLock(store, "a"), **kw), LeaderElector(FakeLock(store, "b"), **kw)
    ran: list[str] = []

    async def work(name):
        ran.append(name)
        await asyncio.sleep(3600)

    ta = asyncio.ensure_future(a.run(lambda: work("a")))
    await asyncio.wait_for(a.leading.wait(), 2)
    tb = asyncio.ensure_future(b.run(lambda: work("b")))
    await asyncio.sleep(1.5)  # longer than the lease: a keeps renewing, b waits
    assert ran == ["a"] and not b.leading.is_set()
    ta.cancel()  # a dies without releasing (as after SIGKILL)
    await asyncio.gather(ta, return_exceptions=True)
    t0 = time.monotonic()
    await asyncio.wait_for(b.leading.wait(), 3)
    assert time.monotonic() - t0 < 1.0 + 2 * 0.1 * 2.2 + 0.3
    await asyncio.sleep(0.05)
    assert ran == ["a", "b"] and store.record.holder_identity == "b" and store.record.leader_transitions == 1
    tb.cancel()
    await asyncio.gather(tb, return_exceptions=True)


def test_validate_timing_messages():
    validate_timing(15, 10, 2)
    with pytest.raises(ValueError, match="leaseDuration must be greater than renewDeadline"):
        validate_timing(10, 10, 2)
    with pytest.raises(ValueError, match="renewDeadline must be greater than retryPeriod"):
        validate_timing(15, 2.4, 2)


def test_flags_defaults_as_upstream():
    p = argparse.ArgumentParser()
    add_flags(p, resource_name="kube-scheduler")
    args = p.parse_args([])
    assert args.leader_elect is True
    assert (args.leader_elect_lease_duration, args.leader_elect_renew_deadline,
            args.leader_elect_retry_period) == (DEFAULT_LEASE_DURATION, DEFAULT_RENEW_DEADLINE,
                                                DEFAULT_RETRY_PERIOD) == (15.0, 10.0, 2.0)
    assert args.leader_elect_resource_name == "kube-scheduler"
    assert args.leader_elect_resource_namespace == "kube-system"
    args = p.parse_args(["--leader-elect=false", "--leader-elect-lease-duration", "4s",
                         "--leader-elect-renew-deadline", "3", "--leader-elect-retry-period", "500ms"])
    assert args.leader_elect is False
    assert (args.leader_elect_lease_duration, args.leader_elect_renew_deadline,
            args.leader_elect_retry_period) == (4.0, 3.0, 0.5)
    with pytest.raises(SystemExit):
        p.parse_args(["--leader-elect-retry-period", "soon"])
