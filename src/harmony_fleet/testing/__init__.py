"""Test doubles shipped with the package, so every test suite (ours and integration tests
against real NATS elsewhere) fakes the same seams the same way.

* :class:`FakeDevice` — a recording, scriptable device with a model of the on-disk layout
  (``current``, ``versions``) and of the candidate, handing out both seams
  (``FakeDevice.files``: ``DeviceFiles``, ``FakeDevice.runner``: ``CandidateRunner``), so tests
  can check where ``current`` points.
* :class:`FakeClock` — wall time and timers moved by hand (:meth:`FakeClock.advance`): no test
  sleeps.
* :class:`MemoryStatusSink`, :class:`MemoryStateStore` — the status KV and the local state file,
  in memory, scriptable to fail.

Beside them, not imported here (they start processes): :mod:`.localfleet` (a whole fleet on one
machine, for the demo, the end-to-end tests and the benchmarks) and :mod:`.launcher` (a device's
launcher as a process of its own behind a command prefix, e.g. ``faketime``: a device clock).

Like httpx's ``MockTransport``, these are part of the library, typed and documented.
"""

from harmony_fleet.testing.clock import FakeClock
from harmony_fleet.testing.fake_device import (
    Call,
    FakeCandidateRunner,
    FakeDevice,
    FakeDeviceFiles,
)
from harmony_fleet.testing.fakes import MemoryStateStore, MemoryStatusSink

__all__ = [
    "Call",
    "FakeCandidateRunner",
    "FakeClock",
    "FakeDevice",
    "FakeDeviceFiles",
    "MemoryStateStore",
    "MemoryStatusSink",
]
