"""The pure heart of agent self-upgrade (ADR-022): decisions only, no I/O.

* :mod:`.machine` — the agent-side state machine, a table and ``step(snapshot, event)``;
  :mod:`.events`, :mod:`.effects`, :mod:`.snapshot`, :mod:`.states` are its vocabulary and
  :mod:`.handlers` its transitions.
* :mod:`.acceptance` — what a marker arriving means (replay, duplicate, newer marker in flight,
  nothing to do, skip list).
* :mod:`.commit` — the operator's decision to send ``upgrade_stop``, and when an upgrade counts
  as Succeeded.
* :mod:`.records` — what the agent keeps on its own disk between processes.
* :mod:`.device` — the two Protocols behind which every side effect on the device sits: its
  files (``DeviceFiles``) and its candidate runner (``CandidateRunner``).
* :mod:`.watch` — the launcher's rules for the post-commit watch.
* :mod:`.diagram` — the Mermaid diagram, generated from the table.

The driver that performs the effects lives in ``harmony_fleet.agent.upgrade``.
"""

from harmony_fleet.core.upgrade.acceptance import Verdict, judge
from harmony_fleet.core.upgrade.commit import (
    CommitView,
    Decision,
    DecisionKind,
    ObservedHeartbeat,
    StopLedger,
    decide,
)
from harmony_fleet.core.upgrade.device import (
    CandidateHandle,
    CandidateRunner,
    DeviceFiles,
    ProcessOutcome,
)
from harmony_fleet.core.upgrade.machine import TABLE, ProtocolViolation, step
from harmony_fleet.core.upgrade.records import InFlight, LocalState, StateStore
from harmony_fleet.core.upgrade.snapshot import Snapshot
from harmony_fleet.core.upgrade.states import ErrorCode, TimerKind, UpgradeState

__all__ = [
    "TABLE",
    "CandidateHandle",
    "CandidateRunner",
    "CommitView",
    "Decision",
    "DecisionKind",
    "DeviceFiles",
    "ErrorCode",
    "InFlight",
    "LocalState",
    "ObservedHeartbeat",
    "ProcessOutcome",
    "ProtocolViolation",
    "Snapshot",
    "StateStore",
    "StopLedger",
    "TimerKind",
    "UpgradeState",
    "Verdict",
    "decide",
    "judge",
    "step",
]
