"""Pure rules of the downloader: backoff with full jitter, Retry-After, policy validation."""

from __future__ import annotations

import email.utils
import random

import pytest

from harmony_fleet.adapters.http import DEFAULT_POLICY, DownloadPolicy
from harmony_fleet.adapters.http.policy import backoff_delay, parse_retry_after
from harmony_fleet.errors import ConfigError

NOW = 1_800_000_000.0


def test_production_defaults() -> None:
    p = DEFAULT_POLICY
    assert (p.deadline_s, p.stall_timeout_s) == (7200.0, 60.0)
    assert (p.backoff_initial_s, p.backoff_max_s) == (1.0, 60.0)
    assert p.max_retries is None
    assert p.chunk_size == 1024 * 1024


@pytest.mark.parametrize("failures", range(1, 12))
def test_backoff_stays_within_the_growing_cap(failures: int) -> None:
    rng = random.Random(failures)
    cap = min(60.0, 1.0 * 2 ** (failures - 1))
    draws = [backoff_delay(failures, initial_s=1.0, max_s=60.0, rng=rng) for _ in range(2000)]
    assert all(0.0 <= d <= cap for d in draws)
    # full jitter: the draws fill [0, cap], they do not cluster at the cap
    assert min(draws) < 0.05 * cap
    assert max(draws) > 0.95 * cap


def test_backoff_is_capped_even_after_many_failures() -> None:
    assert backoff_delay(10_000, initial_s=1.0, max_s=60.0, rng=random.Random(1)) <= 60.0


def test_no_failure_means_no_wait() -> None:
    assert backoff_delay(0, initial_s=1.0, max_s=60.0) == 0.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
    ],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_retry_after_http_date_in_the_future() -> None:
    value = email.utils.formatdate(NOW + 90, usegmt=True)
    assert parse_retry_after(value, now=NOW) == pytest.approx(90.0)


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    assert parse_retry_after(email.utils.formatdate(NOW - 90, usegmt=True), now=NOW) == 0.0


def test_retry_after_asctime_date_is_gmt() -> None:
    assert parse_retry_after("Sun Nov  6 08:49:37 1994", now=784111777.0 - 10) == 10.0


@pytest.mark.parametrize(
    "field", ["deadline_s", "stall_timeout_s", "connect_timeout_s", "chunk_size", "backoff_max_s"]
)
def test_policy_rejects_non_positive(field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        DownloadPolicy(**{field: 0})


@pytest.mark.parametrize("field", ["max_retries", "max_bytes", "keep_free_bytes"])
def test_policy_rejects_negative(field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        DownloadPolicy(**{field: -1})
