"""Errors of the on-disk layer, placed in the project's tree by what the caller should do."""

from __future__ import annotations

from pathlib import Path

from harmony_fleet.errors import PermanentError, TemporaryError


class LayoutBroken(PermanentError):
    """The agent's folder is in a shape self-heal cannot repair; a person must look."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"agent layout at {path} is broken: {reason}")
        self.path = path
        self.reason = reason


class DiskError(TemporaryError):
    """A file operation failed (full disk, I/O error, permissions): ``errno`` says which."""

    def __init__(self, what: str, exc: OSError) -> None:
        super().__init__(f"{what}: {exc.strerror or exc}")
        self.errno = exc.errno
