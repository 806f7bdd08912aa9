"""CrashLoopBackOff arithmetic (flowcontrol.Backoff semantics) on a fake clock."""
from kubelet.backoff import Backoff


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_doubles_and_caps():
    """10 s, 20 s, 40 s ... capped at max."""
    clock = Clock()
    b = Backoff(initial=10, max=60, clock=clock)
    seen = []
    for _ in range(5):
        b.next("k")
        seen.append(b.get("k"))
        clock.t += 1
    assert seen == [10, 20, 40, 60, 60]


def test_in_backoff_since_window():
    """A container that finished 5 s ago with a 10 s backoff is still in backoff; 11 s later it is not."""
    clock = Clock()
    b = Backoff(initial=10, max=300, clock=clock)
    assert not b.in_backoff_since("k", clock.t)
    b.next("k")
    finished = clock.t - 5
    assert b.in_backoff_since("k", finished)
    assert 4.9 < b.remaining("k", finished) <= 5
    clock.t += 6
    assert not b.in_backoff_since("k", finished)


def test_entry_expires_after_twice_max():
    """After 2*max without failures the backoff starts again from initial."""
    clock = Clock()
    b = Backoff(initial=10, max=30, clock=clock)
    b.next("k")
    b.next("k")
    assert b.get("k") == 20
    clock.t += 61
    b.next("k")
    assert b.get("k") == 10
    clock.t += 61
    b.gc()
    assert b.get("k") == 0
