"""Leader election over a coordination.k8s.io/v1 Lease, so that two
schedulers (or two controller-managers) can run and only one acts.

Mirrors client-go's tools/leaderelection (LeaderElector, tryAcquireOrRenew,
acquire, renew, release) with its resourcelock.LeaseLock. A candidate may
take the lease when it is free (no holder) or expired; expiry is judged by
the local monotonic time at which this candidate last *saw the record
change* plus leaseDurationSeconds, never by comparing the holder's
renewTime with this host's wall clock (clocks of two hosts may disagree).
The leader renews every retry period; if it cannot renew within the renew
deadline it stops leading (the caller's process then exits non-zero, as
upstream's OnStoppedLeading does). On graceful shutdown the lease is
released (ReleaseOnCancel): holderIdentity cleared and
leaseDurationSeconds=1, so a standby takes over at its next retry.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import logging
import random
import socket
import time
import uuid
from typing import Awaitable, Callable, Protocol

from kubeling.client import metrics as client_metrics
from kubeling.client.record import NORMAL, EventRecorder
from kubeling.duration import flag_duration
from kubeling.client.rest import ApiError, Client

log = logging.getLogger(__name__)

# Upstream's defaults (component-base LeaderElectionConfiguration) and JitterFactor.
DEFAULT_LEASE_DURATION = 15.0
DEFAULT_RENEW_DEADLINE = 10.0
DEFAULT_RETRY_PERIOD = 2.0
JITTER_FACTOR = 1.2


class LeaderElectionLost(Exception):
    """Raised by ``LeaderElector.run`` when renewals failed past the renew
    deadline (upstream's OnStoppedLeading without a cancelled context)."""


@dataclasses.dataclass
class LeaderElectionRecord:
    """The lease's view as client-go's LeaderElectionRecord; times are RFC 3339
    MicroTime strings (``2024-01-02T03:04:05.000000Z``) or ''."""

    holder_identity: str = ""
    lease_duration_seconds: int = 0
    acquire_time: str = ""
    renew_time: str = ""
    leader_transitions: int = 0

    @classmethod
    def from_lease_spec(cls, spec: dict | None) -> "LeaderElectionRecord":
        """Record from a Lease's ``spec`` (client-go's LeaseSpecToLeaderElectionRecord)."""
        spec = spec or {}
        return cls(holder_identity=spec.get("holderIdentity") or "",
                   lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
                   acquire_time=spec.get("acquireTime") or "", renew_time=spec.get("renewTime") or "",
                   leader_transitions=int(spec.get("leaseTransitions") or 0))

    def to_lease_spec(self) -> dict:
        """A Lease ``spec`` (client-go's LeaderElectionRecordToLeaseSpec)."""
        spec = {"holderIdentity": self.holder_identity, "leaseDurationSeconds": self.lease_duration_seconds,
                "leaseTransitions": self.leader_transitions}
        if self.acquire_time:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time:
            spec["renewTime"] = self.renew_time
        return spec


def micro_time_now() -> str:
    """Current UTC time as a MicroTime (microsecond RFC 3339, as Lease times are written)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ResourceLock(Protocol):
    """What the elector needs from a lock (client-go's resourcelock.Interface).

    ``get`` returns the record or raises ApiError 404; ``create`` / ``update``
    raise ApiError (409 when someone else wrote the lock first)."""

    identity: str

    async def get(self) -> LeaderElectionRecord: ...
    async def create(self, record: LeaderElectionRecord) -> None: ...
    async def update(self, record: LeaderElectionRecord) -> None: ...
    def describe(self) -> str: ...
    def record_event(self, message: str) -> None: ...


class LeaseLock:
    """A Lease ``namespace/name`` as the lock (client-go's resourcelock.LeaseLock).

    ``update`` PUTs the last Lease read (or written) with a new spec, so its
    resourceVersion makes the write conditional: two candidates racing for
    the same expired lease cannot both win.
    """

    def __init__(self, client: Client, namespace: str, name: str, identity: str, *,
                 recorder: EventRecorder | None = None):
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.recorder = recorder
        self._lease: dict | None = None

    async def get(self) -> LeaderElectionRecord:
        """The current record; raises ApiError (404 when the Lease does not exist)."""
        self._lease = await self.client.get("leases", self.name, namespace=self.namespace)
        return LeaderElectionRecord.from_lease_spec(self._lease.get("spec"))

    async def create(self, record: LeaderElectionRecord) -> None:
        """Create the Lease holding ``record``; raises ApiError (409 AlreadyExists)."""
        self._lease = await self.client.create("leases", {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": record.to_lease_spec()}, namespace=self.namespace)

    async def update(self, record: LeaderElectionRecord) -> None:
        """Replace the spec of the last Lease seen; raises ApiError (409 Conflict if it changed),
        ValueError if the lock was never read or created."""
        if self._lease is None:
            raise ValueError("lease not initialized, call get or create first")
        lease = {**self._lease, "spec": record.to_lease_spec()}
        self._lease = await self.client.replace("leases", lease)

    def describe(self) -> str:
        """``namespace/name`` of the lock, for log lines."""
        return f"{self.namespace}/{self.name}"

    def record_event(self, message: str) -> None:
        """Event ``LeaderElection`` "<identity> <message>" on the Lease (best effort)."""
        if self.recorder is None or self._lease is None:
            return
        subject = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": self._lease["metadata"]}
        try:
            self.recorder.event(subject, NORMAL, "LeaderElection", f"{self.identity} {message}")
        except RuntimeError:  # no running loop (unit tests calling synchronously)
            pass


def validate_timing(lease_duration: float, renew_deadline: float, retry_period: float) -> None:
    """Upstream's NewLeaderElector checks; raises ValueError with its message."""
    if lease_duration <= renew_deadline:
        raise ValueError("leaseDuration must be greater than renewDeadline")
    if renew_deadline <= JITTER_FACTOR * retry_period:
        raise ValueError("renewDeadline must be greater than retryPeriod*JitterFactor")
    if lease_duration <= 0 or renew_deadline <= 0 or retry_period <= 0:
        raise ValueError("leaseDuration, renewDeadline and retryPeriod must be greater than zero")


class LeaderElector:
    """Campaigns for ``lock`` and runs the caller's work only while leading.

    ``await run(work)``: acquire (retrying every ``retry_period`` s, jittered),
    then run ``work()`` while renewing; returns ``work``'s result if it ends
    by itself, raises LeaderElectionLost when renewals fail for
    ``renew_deadline`` s (``work`` is cancelled first), and on cancellation
    releases the lease if ``release_on_cancel``. ``clock`` is a monotonic
    seconds function (tests pass a fake one). Raises ValueError on bad timing.
    """

    def __init__(self, lock: ResourceLock, *, lease_duration: float = DEFAULT_LEASE_DURATION,
                 renew_deadline: float = DEFAULT_RENEW_DEADLINE, retry_period: float = DEFAULT_RETRY_PERIOD,
                 release_on_cancel: bool = True, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None):
        validate_timing(lease_duration, renew_deadline, retry_period)
        self.lock = lock
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        self.clock = clock
        self.rng = rng or random.Random()
        self.observed_record = LeaderElectionRecord()
        self.observed_time = 0.0
        self._have_observed = False
        self.leading = asyncio.Event()  # set while this candidate is the leader
        client_metrics.watch_elector(self)  # leader_election_master_status

    @property
    def identity(self) -> str:
        """This candidate's holderIdentity."""
        return self.lock.identity

    def is_leader(self) -> bool:
        """The last observed record names us (client-go's IsLeader)."""
        return self.observed_record.holder_identity == self.identity

    def get_leader(self) -> str:
        """holderIdentity of the last observed record ('' if none)."""
        return self.observed_record.holder_identity

    def _lease_valid(self, now: float) -> bool:
        return self._have_observed and \
            self.observed_time + self.observed_record.lease_duration_seconds > now

    def _set_observed(self, record: LeaderElectionRecord) -> None:
        self.observed_record = record
        self.observed_time = self.clock()
        self._have_observed = True

    async def try_acquire_or_renew(self) -> bool:
        """One attempt (client-go's tryAcquireOrRenew): True if we hold the lease afterwards.
        Never raises for API failures (they count as a failed attempt)."""
        now_s = micro_time_now()
        record = LeaderElectionRecord(holder_identity=self.identity,
                                      lease_duration_seconds=max(1, int(round(self.lease_duration))),
                                      acquire_time=now_s, renew_time=now_s)
        # Fast path: the leader updates optimistically from the record it wrote last.
        if self.is_leader() and self._lease_valid(self.clock()):
            old = self.observed_record
            record.acquire_time = old.acquire_time
            record.leader_transitions = old.leader_transitions
            try:
                await self.lock.update(record)
                self._set_observed(record)
                return True
            except Exception as e:  # ApiError, httpx transport errors: try the slow path
                log.info("failed to update lease optimistically, falling back to slow path: %s", e)

        try:
            old = await self.lock.get()
        except ApiError as e:
            if e.code != 404:
                log.warning("error retrieving resource lock %s: %s", self.lock.describe(), e)
                return False
            try:
                await self.lock.create(record)
            except Exception as e2:
                log.warning("error initially creating leader election record: %s", e2)
                return False
            self._set_observed(record)
            return True
        except Exception as e:
            log.warning("error retrieving resource lock %s: %s", self.lock.describe(), e)
            return False

        if not self._have_observed or old != self.observed_record:
            self._set_observed(old)
        if old.holder_identity and self._lease_valid(self.clock()) and not self.is_leader():
            log.debug("lock is held by %s and has not yet expired", old.holder_identity)
            return False

        if self.is_leader():
            record.acquire_time = old.acquire_time
            record.leader_transitions = old.leader_transitions
        else:
            record.leader_transitions = old.leader_transitions + 1
        try:
            await self.lock.update(record)
        except Exception as e:
            log.warning("failed to update lock %s: %s", self.lock.describe(), e)
            return False
        self._set_observed(record)
        return True

    def _jittered(self) -> float:
        return self.retry_period * (1 + self.rng.random() * JITTER_FACTOR)

    async def acquire(self) -> None:
        """Retry every jittered retry period until the lease is ours (client-go's acquire)."""
        desc = self.lock.describe()
        log.info("attempting to acquire leader lease %s as %s...", desc, self.identity)
        while True:
            if await self.try_acquire_or_renew():
                self.lock.record_event("became leader")
                log.info("successfully acquired lease %s as %s", desc, self.identity)
                self.leading.set()
                return
            leader = self.get_leader()
            if leader and leader != self.identity:
                log.debug("new leader elected or still held: %s", leader)
            await asyncio.sleep(self._jittered())

    async def renew(self) -> None:
        """Renew every retry period; returns when a renewal round failed for the
        renew deadline (client-go's renew), after which we are no longer leader."""
        while True:
            renewed = False
            try:
                async with asyncio.timeout(self.renew_deadline):
                    while True:
                        if await self.try_acquire_or_renew():
                            renewed = True
                            break
                        await asyncio.sleep(self.retry_period)
            except TimeoutError:
                pass
            if not renewed:
                log.error("failed to renew lease %s: timed out waiting for the condition", self.lock.describe())
                self.leading.clear()
                self.lock.record_event("stopped leading")
                return
            await asyncio.sleep(self.retry_period)

    async def release(self) -> bool:
        """Give the lease up if we hold it (holderIdentity '', leaseDurationSeconds 1);
        True on success or when not leader. Never raises for API failures."""
        if not self.is_leader():
            return True
        now_s = micro_time_now()
        record = LeaderElectionRecord(holder_identity="", lease_duration_seconds=1, acquire_time=now_s,
                                      renew_time=now_s,
                                      leader_transitions=self.observed_record.leader_transitions)
        try:
            await self.lock.update(record)
        except Exception as e:
            log.error("failed to release lock %s: %s", self.lock.describe(), e)
            return False
        self._set_observed(record)
        self.leading.clear()
        log.info("released lease %s", self.lock.describe())
        return True

    async def run(self, work: Callable[[], Awaitable]) -> object:
        """Acquire, then run ``work()`` while renewing (see the class docstring)."""
        try:
            await self.acquire()
            work_task = asyncio.ensure_future(work())
            renew_task = asyncio.ensure_future(self.renew())
            try:
                done, _ = await asyncio.wait({work_task, renew_task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (work_task, renew_task):
                    t.cancel()
                await asyncio.gather(work_task, renew_task, return_exceptions=True)
            if work_task in done and not work_task.cancelled():
                return work_task.result()
            raise LeaderElectionLost(f"leader election lost for {self.lock.describe()}")
        except asyncio.CancelledError:
            if self.release_on_cancel:
                # Shield-free on purpose: the cancel was delivered once; this
                # await gets its own bounded time to write the release.
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    async with asyncio.timeout(self.renew_deadline):
                        await self.release()
            raise


def default_identity() -> str:
    """``<hostname>_<uuid>`` as kube-scheduler / kube-controller-manager build their identity."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def add_flags(parser: argparse.ArgumentParser, *, resource_name: str) -> None:
    """Add upstream's --leader-elect* flags (component-base options) to ``parser``."""
    parser.add_argument("--leader-elect", type=_bool, nargs="?", const=True, default=True,
                        help="run leader election and act only while leading (default true)")
    parser.add_argument("--leader-elect-lease-duration", type=flag_duration, default=DEFAULT_LEASE_DURATION,
                        help="seconds a standby waits after the last observed renewal before taking over (15s)")
    parser.add_argument("--leader-elect-renew-deadline", type=flag_duration, default=DEFAULT_RENEW_DEADLINE,
                        help="seconds the leader keeps retrying a renewal before it stops leading (10s)")
    parser.add_argument("--leader-elect-retry-period", type=flag_duration, default=DEFAULT_RETRY_PERIOD,
                        help="seconds between acquire/renew attempts (2s)")
    parser.add_argument("--leader-elect-resource-lock", default="leases", choices=["leases"],
                        help="lock object type (only leases)")
    parser.add_argument("--leader-elect-resource-name", default=resource_name,
                        help=f"name of the Lease used as the lock ({resource_name})")
    parser.add_argument("--leader-elect-resource-namespace", default="kube-system",
                        help="namespace of the Lease used as the lock (kube-system)")


def elector_from_args(args: argparse.Namespace, *, component: str) -> LeaderElector:
    """A LeaderElector over a LeaseLock configured by ``add_flags``'s flags and
    ``args.kubeconfig``. Like upstream's separate "leader-election" clientset,
    the lock gets its OWN client (connection pool), so renewals never queue
    behind the component's bulk requests; close it with ``await
    elector.lock.client.close()``. The identity is ``<hostname>_<uuid>``;
    events come from ``component``. Raises ValueError on bad timing,
    KubeconfigError on a bad kubeconfig."""
    identity = default_identity()
    client = Client.from_kubeconfig(args.kubeconfig, user_agent=f"{component}/leader-election",
                                    timeout=max(1.0, args.leader_elect_renew_deadline))
    lock = LeaseLock(client, args.leader_elect_resource_namespace, args.leader_elect_resource_name, identity,
                     recorder=EventRecorder(client, component, host=socket.gethostname()))
    return LeaderElector(lock, lease_duration=args.leader_elect_lease_duration,
                         renew_deadline=args.leader_elect_renew_deadline,
                         retry_period=args.leader_elect_retry_period)


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "t", "true", "yes", "y"):
        return True
    if low in ("0", "f", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r} (true or false)")
