"""The agent version this build carries in every heartbeat, and the build's injected faults.

The version comes from the installed distribution's metadata, so that ``pip install`` of version X
and an artifact built from version X report the same string. An artifact build overrides it by
writing ``harmony_fleet/_build_version.py`` into the artifact (see ``harmony_fleet.artifacts``)::

    VERSION = "2.0.0"
    FAULTS = ("no-heartbeat",)

``FAULTS`` exists for the demo and the fault-matrix tests: it lets us build a *real* artifact that
misbehaves in a named way (see ``harmony_fleet.agent.faults``). Release builds have none.
"""

from __future__ import annotations

import importlib


def _build_module() -> object | None:
    try:
        return importlib.import_module("harmony_fleet._build_version")
    except ImportError:
        return None


def _read_version() -> str:
    build = _build_module()
    if build is not None and hasattr(build, "VERSION"):
        return str(build.VERSION)
    # Only without a baked version: importlib.metadata costs every start ~40 ms (email, zipfile).
    from importlib import metadata  # noqa: PLC0415

    try:
        return metadata.version("harmony-fleet")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0+unknown"


def _read_faults() -> frozenset[str]:
    build = _build_module()
    return frozenset(str(f) for f in getattr(build, "FAULTS", ()) or ())


__version__: str = _read_version()
BUILD_FAULTS: frozenset[str] = _read_faults()
