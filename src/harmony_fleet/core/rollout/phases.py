"""The phases of a rollout, as a table: which trigger may move which phase where.

Like the upgrade machine (``core.upgrade.machine``), the protocol is data. :data:`TABLE` maps
each :class:`RolloutPhase` to the triggers it accepts and, for each, the phases it may lead to
(several when the target depends on where the rollout was, as for ``Resume``). The engine moves
a status only through :func:`move`, which refuses a move the table does not declare, and
:mod:`.diagram` draws docs/rollouts.md's diagram from the same table.

The person's levers on :class:`~harmony_fleet.contracts.rollout.Rollout` are levels, not
events: ``undo_requested`` wins over ``aborted`` (stop, then go back, is the usual order), and
both over ``paused``. A halt is left only by an undo or an abort: resuming a rollout whose wave
just failed would halt it again at once, and a person who judged the failures harmless creates a
new rollout.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

import msgspec

from harmony_fleet.contracts.rollout import RolloutPhase, RolloutStatus
from harmony_fleet.errors import PermanentError

P = RolloutPhase


class Trigger(enum.StrEnum):
    """What moves a rollout from one phase to another."""

    CANARIES_PASSED = "CanariesPassed"
    """Every canary reached Succeeded (post-commit watch over); the soak starts."""
    SOAK_PASSED = "SoakPassed"
    FAILURE_RATE_CROSSED = "FailureRateCrossed"
    """The wave in hand failed more than allowed (a canary: any failure)."""
    ALL_SETTLED = "AllSettled"
    """No device is pending or in progress any more."""
    PAUSE = "Pause"
    RESUME = "Resume"
    ABORT = "Abort"
    UNDO = "Undo"
    UNDO_SETTLED = "UndoSettled"


#: Phases a rollout never leaves by itself (``Done``, ``Aborted`` and ``Halted`` may still be
#: undone; ``Undone`` is the end).
TERMINAL = frozenset({P.DONE, P.ABORTED, P.UNDONE})
#: Phases in which the rollout may start new devices on the new version.
STARTING = frozenset({P.CANARY, P.WAVES})
#: Phases a pause can come from (and a resume go back to).
ACTIVE = (P.CANARY, P.SOAKING, P.WAVES)

_UNDO = {Trigger.UNDO: (P.UNDOING,)}
_ABORT = {Trigger.ABORT: (P.ABORTED,)}

TABLE: Mapping[RolloutPhase, Mapping[Trigger, tuple[RolloutPhase, ...]]] = MappingProxyType(
    {
        P.CANARY: {
            Trigger.CANARIES_PASSED: (P.SOAKING,),
            Trigger.FAILURE_RATE_CROSSED: (P.HALTED,),
            Trigger.ALL_SETTLED: (P.DONE,),
            Trigger.PAUSE: (P.PAUSED,),
            **_ABORT,
            **_UNDO,
        },
        P.SOAKING: {
            Trigger.SOAK_PASSED: (P.WAVES,),
            Trigger.PAUSE: (P.PAUSED,),
            **_ABORT,
            **_UNDO,
        },
        P.WAVES: {
            Trigger.FAILURE_RATE_CROSSED: (P.HALTED,),
            Trigger.ALL_SETTLED: (P.DONE,),
            Trigger.PAUSE: (P.PAUSED,),
            **_ABORT,
            **_UNDO,
        },
        P.PAUSED: {
            Trigger.RESUME: ACTIVE,
            Trigger.FAILURE_RATE_CROSSED: (P.HALTED,),
            **_ABORT,
            **_UNDO,
        },
        P.HALTED: {**_ABORT, **_UNDO},
        P.DONE: {**_UNDO},
        P.ABORTED: {**_UNDO},
        P.UNDOING: {Trigger.UNDO_SETTLED: (P.UNDONE,)},
        P.UNDONE: {},
    }
)


class TableError(PermanentError):
    """The engine tried a move the phase table does not declare (a bug in this package)."""


def move(
    status: RolloutStatus, trigger: Trigger, target: RolloutPhase, **changes: object
) -> RolloutStatus:
    """``status`` moved to ``target`` by ``trigger`` (with other fields changed as given);
    raise :class:`TableError` if the table has no such move."""
    allowed = TABLE[status.phase].get(trigger, ())
    if target not in allowed:
        raise TableError(f"{trigger.value} in {status.phase.value} cannot lead to {target.value}")
    return msgspec.structs.replace(status, phase=target, **changes)
