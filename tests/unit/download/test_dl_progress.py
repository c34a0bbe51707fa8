"""The progress throttle, on a fake clock."""

from __future__ import annotations

import pytest

from harmony_fleet.adapters.http.progress import DownloadProgress, ProgressThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_reports_at_most_once_per_interval_and_once_at_the_end() -> None:
    clock = Clock()
    seen: list[DownloadProgress] = []
    t = ProgressThrottle(seen.append, 0.25, clock=clock)
    t.bytes_total = 10_000
    done = 0
    for _ in range(100):  # 100 pieces over 1 s
        clock.now += 0.01
        t.add(100)
        done += 100
        t.tick(done)
    assert len(seen) == 4  # at 0.25, 0.50, 0.75, 1.00
    t.finish(done)
    assert len(seen) == 5
    last = seen[-1]
    assert (last.bytes_done, last.bytes_total, last.retries) == (10_000, 10_000, 0)
    assert last.rate_bps == pytest.approx(10_000.0)


def test_rate_is_smoothed_and_counts_only_received_bytes() -> None:
    clock = Clock()
    seen: list[DownloadProgress] = []
    t = ProgressThrottle(seen.append, 1.0, clock=clock)
    clock.now += 1.0
    t.add(1000)
    t.tick(5_000 + 1000)  # 5000 bytes were resumed from disk: not in the rate
    assert seen[-1].rate_bps == 1000.0
    clock.now += 1.0
    t.add(2000)
    t.tick(8000)
    assert 1000.0 < seen[-1].rate_bps < 2000.0


def test_no_callback_costs_nothing_and_never_fails() -> None:
    t = ProgressThrottle(None, 0.0)
    t.add(5)
    t.tick(5)
    t.finish(5)
    assert t._next == float("inf"), "without a callback no progress is ever due"


def test_retries_are_reported() -> None:
    seen: list[DownloadProgress] = []
    t = ProgressThrottle(seen.append, 10.0)
    t.retries = 3
    t.finish(0)
    assert seen[0].retries == 3 and seen[0].bytes_total is None
