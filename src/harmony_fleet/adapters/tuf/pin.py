"""The device's pinned trust root: ``<state>/tuf/root.json`` (no python-tuf import here).

``fleet agent install --trust-root root.json`` (and ``fleet agent run --trust-root``) copies the
release manager's initial root into the device's state dir; the candidate and every later main
of the device find it there (they share the state dir). ngclient keeps the metadata it has
verified beside it (``<state>/tuf/metadata``).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from harmony_fleet.errors import ConfigError

log = logging.getLogger(__name__)

#: Under the agent's state dir: the pinned root and the metadata ngclient keeps.
TUF_DIR = "tuf"
ROOT_FILE = "root.json"
METADATA_DIR = "metadata"


def pinned_root(state_dir: Path) -> Path:
    return state_dir / TUF_DIR / ROOT_FILE


def pin_root(state_dir: Path, root: Path) -> Path:
    """Copy ``root`` (the release manager's ``root.json``) into ``state_dir`` as the trust root.

    The same bytes again change nothing (the metadata followed since is kept: a candidate
    started with the same flag). Other bytes replace the pin and drop that metadata: a new
    initial root is an administrator's act (a re-install), the chain starts from it again.
    """
    dest = pinned_root(state_dir)
    try:
        data = root.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--trust-root {root}: {exc.strerror or exc}") from exc
    if dest.is_file() and dest.read_bytes() == data:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        log.warning("trust root replaced; the metadata followed since is dropped")
        shutil.rmtree(dest.parent / METADATA_DIR, ignore_errors=True)
    tmp = dest.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(dest)
    return dest
