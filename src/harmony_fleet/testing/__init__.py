"""Test doubles shipped with the package, so every test suite (ours and the lead's integration
tests against real NATS) fakes the same seams the same way.

* :class:`FakeExecutor` — a recording, scriptable ``UpgradeExecutor`` with a model of the
  on-disk layout (``current``, ``versions``), so tests can check where ``current`` points.
* :class:`FakeClock` — wall time and timers moved by hand (:meth:`FakeClock.advance`): no test
  sleeps.
* :class:`MemoryStatusSink`, :class:`MemoryStateStore` — the status KV and the local state file,
  in memory, scriptable to fail.

Like httpx's ``MockTransport``, these are part of the library, typed and documented.
"""

from harmony_fleet.testing.clock import FakeClock
from harmony_fleet.testing.fake_executor import Call, FakeExecutor
from harmony_fleet.testing.fakes import MemoryStateStore, MemoryStatusSink

__all__ = ["Call", "FakeClock", "FakeExecutor", "MemoryStateStore", "MemoryStatusSink"]
