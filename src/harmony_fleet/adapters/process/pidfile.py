"""One pid file format for every process we start and must find again (main and candidates).

A pid alone names a process only until it is reused, so the file names it by ``(pid, start
time)`` (:class:`~harmony_fleet.contracts.device_files.PidRecord`, a versioned contract: a
supervisor of one version reads what another left). It is written atomically after the process
exists; a file that does not decode is treated as absent, with a warning.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

from harmony_fleet.adapters.device.errors import DiskError
from harmony_fleet.adapters.device.fs import write_atomic
from harmony_fleet.adapters.process._proc import ProcId
from harmony_fleet.contracts import encode
from harmony_fleet.contracts.device_files import PID_RECORD, PidRecord
from harmony_fleet.contracts.ids import UpgradeId, Version
from harmony_fleet.errors import InvalidMessage

log = logging.getLogger(__name__)


class PidFile:
    """The pid file at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(
        self, ident: ProcId, *, version: Version, upgrade_id: UpgradeId | None = None
    ) -> None:
        """Record ``ident`` durably; ``DiskError`` if it cannot be."""
        record = PidRecord(
            pid=ident.pid,
            start_time=ident.start_time,
            version=version,
            upgrade_id=upgrade_id,
            started_at=time.time(),
        )
        try:
            write_atomic(self.path, encode(record))
        except OSError as exc:
            raise DiskError(f"write pid file {self.path}", exc) from exc

    def read(self) -> ProcId | None:
        """The process it names (it may have ended since), None if there is no usable file."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("pid file unreadable", extra={"path": str(self.path), "error": str(exc)})
            return None
        try:
            record = PID_RECORD.decode(data)
        except InvalidMessage as exc:
            log.warning("bad pid file", extra={"path": str(self.path), "error": str(exc)})
            return None
        return ProcId(record.pid, record.start_time)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
