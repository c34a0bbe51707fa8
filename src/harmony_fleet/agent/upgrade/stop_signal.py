"""The stop signal: which ``upgrade_stop`` this agent instance would act on, if any.

Both the old agent and the candidate receive every command of the device. Only an old agent in
CutoverReady or Holding is armed, and only for one ``upgrade_id``; the machine arms and disarms
it through effects. The command handler may ask :meth:`StopSignal.would_commit` cheaply, but
the authoritative answer always comes from the machine (``UpgradeDriver.on_stop``).
"""

from __future__ import annotations

from harmony_fleet.contracts.commands import ReplyCode
from harmony_fleet.contracts.ids import UpgradeId


class StopSignal:
    """Armed for at most one upgrade id at a time."""

    def __init__(self) -> None:
        self._armed_for: UpgradeId | None = None

    @property
    def armed_for(self) -> UpgradeId | None:
        return self._armed_for

    def arm(self, upgrade_id: UpgradeId) -> None:
        self._armed_for = upgrade_id

    def disarm(self) -> None:
        self._armed_for = None

    def would_commit(self, upgrade_id: str) -> ReplyCode:
        """OK if a stop for ``upgrade_id`` would commit now, else the refusal code."""
        if self._armed_for is None:
            return ReplyCode.NOT_ARMED
        if upgrade_id != self._armed_for:
            return ReplyCode.WRONG_UPGRADE
        return ReplyCode.OK
