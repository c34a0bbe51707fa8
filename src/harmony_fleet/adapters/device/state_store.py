"""The agent's local state file: finished upgrade ids, the skip list, the latest upgrade record.

One small JSON file in the format of ``contracts.local_state`` (strict on decode), replaced
atomically on every save: written to a temporary sibling, fsynced, renamed over the old file,
and the folder fsynced. A crash at any point leaves either the old file or the new one, plus at
worst a temporary file that the next load removes. A file that no longer decodes (a bug, a
disk error) is moved aside as ``<name>.corrupt-<time>`` and an empty state is used, with an
error in the log: an agent that cannot start is worse than one that forgot its history (the
operator's registry still has it).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from harmony_fleet.adapters.device.errors import DiskError
from harmony_fleet.adapters.device.fs import write_atomic
from harmony_fleet.contracts import LOCAL_STATE, LocalState
from harmony_fleet.errors import InvalidMessage

log = logging.getLogger(__name__)


class FileStateStore:
    """Implements ``core.upgrade.records.StateStore`` on one file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _leftovers(self) -> list[Path]:
        folder = self.path.parent
        if not folder.is_dir():
            return []
        return [p for p in folder.iterdir() if p.name.startswith(f".{self.path.name}.tmp-")]

    def load(self) -> LocalState:
        for leftover in self._leftovers():
            log.warning("removing a torn write", extra={"path": str(leftover)})
            leftover.unlink(missing_ok=True)
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return LocalState()
        except OSError as exc:
            raise DiskError(f"read {self.path}", exc) from exc
        try:
            return LOCAL_STATE.decode(data)
        except InvalidMessage as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            log.error(
                "local upgrade state unreadable; starting empty",
                extra={"path": str(self.path), "moved_to": str(aside), "error": str(exc)},
            )
            return LocalState()

    def save(self, state: LocalState) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, LOCAL_STATE.encode(state))
        except OSError as exc:
            raise DiskError(f"write {self.path}", exc) from exc
