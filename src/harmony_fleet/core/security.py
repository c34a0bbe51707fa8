"""Security events: counted always, logged at most once per window per (kind, key). Pure.

Whoever can make the operator or an agent drop a message can also send millions of them: one log
line each would turn every refusal into a flood of the log (and of the shipped log stream). So a
refusal is counted every time, and a line is due for the first event of a (kind, key), then at
most once per ``window_s``, saying how many were left unsaid in between.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

#: Distinct (kind, key) pairs remembered; past that the memory starts afresh (a flood of
#: invented device names must not grow it without bound).
MAX_KEYS = 10_000


@dataclass
class SecurityEvents:
    """Counts by kind, and when to log (the caller logs: this module does no I/O)."""

    window_s: float = 60.0
    counts: Counter[str] = field(default_factory=Counter)
    _last: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)

    def record(self, kind: str, key: str, now: float) -> int | None:
        """Count one event; return how many earlier ones went unlogged when a line is due now,
        None when this one is to be counted only."""
        self.counts[kind] += 1
        slot = (kind, key)
        seen = self._last.get(slot)
        if seen is not None and now - seen[0] < self.window_s:
            self._last[slot] = (seen[0], seen[1] + 1)
            return None
        if seen is None and len(self._last) >= MAX_KEYS:
            self._last.clear()
        self._last[slot] = (now, 0)
        return 0 if seen is None else seen[1]
