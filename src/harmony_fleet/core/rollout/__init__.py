"""The pure rollout engine (docs/rollouts.md): decisions only, no I/O, time is an argument.

* :mod:`.engine` — :func:`plan`: from the rollout, its status, the fleet and the progress
  records to the next :class:`Plan` (records to write, markers to write, the new status).
* :mod:`.phases` — the rollout's phases as a table, and :func:`~.phases.move`;
  :mod:`.diagram` draws it.
* :mod:`.fleet` — what the engine sees of a device (:class:`DeviceView`), membership, the
  pre-flight gates, what an upgrade status means for the rollout, derived upgrade ids.
* :mod:`.canary` — the stratified canary cohort.
* :mod:`.undo` — returning upgraded devices to their previous version.
* :mod:`.windows` — maintenance windows (parse, open or not, next opening).
* :mod:`.ledger` — one plan's working copy of the records.

The operator performs the plans (``operator.rollouts``); docs/rollouts.md says what is built.
"""

from harmony_fleet.core.rollout.actions import Plan, Start
from harmony_fleet.core.rollout.engine import plan
from harmony_fleet.core.rollout.fleet import DeviceView, UpgradeView
from harmony_fleet.core.rollout.phases import TABLE, Trigger
from harmony_fleet.core.rollout.windows import TzResolver, parse_window

__all__ = [
    "TABLE",
    "DeviceView",
    "Plan",
    "Start",
    "Trigger",
    "TzResolver",
    "UpgradeView",
    "parse_window",
    "plan",
]
