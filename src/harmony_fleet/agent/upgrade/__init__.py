"""The agent's self-upgrade: the driver that runs ``core.upgrade``'s machine on a device.

The pure machine decides; :class:`UpgradeDriver` performs its effects through the device's two
seams (``core.upgrade.device``: ``DeviceFiles`` and ``CandidateRunner``, whose calls
:mod:`.work` turns into events), a :class:`StatusSink` (the status KV) and a :class:`Clock` (time
and timers), plus the local state store. The agent process wires NATS to it (:mod:`.wiring`):
marker watch -> :meth:`UpgradeDriver.run_marker`, heartbeats ->
:meth:`UpgradeDriver.record_heartbeat`, ``upgrade_stop`` -> :meth:`UpgradeDriver.on_stop`, and
exits when :meth:`UpgradeDriver.wait_handover` returns.
"""

from harmony_fleet.agent.upgrade.driver import UpgradeDriver
from harmony_fleet.agent.upgrade.ports import Cancellable, Clock, LoopClock, StatusSink
from harmony_fleet.agent.upgrade.status_writer import StatusWriter

__all__ = [
    "Cancellable",
    "Clock",
    "LoopClock",
    "StatusSink",
    "StatusWriter",
    "UpgradeDriver",
]
