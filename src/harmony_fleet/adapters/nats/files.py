"""Writing the auth setup's files: secrets 0600 from their first byte, public files atomically.

:func:`write_secret` is how every secret file (seeds, ``.creds``, keys, the context) is written:
created 0600 by ``open(O_CREAT | O_EXCL)`` on a temporary name in a 0700 directory, then renamed
over the target, never chmod-ed after the fact, so no other user can open it in between.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def write_secret(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` readable by its owner only, from the first byte (atomic)."""
    raw = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_public(path: Path, data: bytes | str) -> None:
    """Write a non-secret file (a certificate, a JWT) atomically, 0644."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(raw)
    os.replace(tmp, path)
