"""The agent version this build carries in every heartbeat.

It comes from the installed distribution's metadata, so that ``pip install`` of version X and an
artifact built from version X report the same string. An artifact build may override it by
writing ``_build_version.py`` beside this file (see ``harmony_fleet.artifacts``).
"""

from __future__ import annotations

import importlib
from importlib import metadata


def _read() -> str:
    try:
        return str(importlib.import_module("harmony_fleet._build_version").VERSION)
    except ImportError:
        pass
    try:
        return metadata.version("harmony-fleet")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0+unknown"


__version__: str = _read()
