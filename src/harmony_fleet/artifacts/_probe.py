"""A tiny entry point for testing artifacts before (and independently of) the real CLI.

Built with ``entry="harmony_fleet.artifacts._probe:main"``, an artifact runs this instead of
``harmony_fleet.cli.main:main``: it prints, as one JSON line, what the bootstrap did and what the
artifact's code sees (the baked version as a heartbeat would carry it, the faults, where msgspec's
compiled module and nats-py were imported from), so a test can check self-containment from
outside the process. ``--version`` prints just the version, like the real CLI.
"""

from __future__ import annotations

import sys
from typing import Any

from harmony_fleet import _version


def main() -> int:
    """Print the probe report; return 0."""
    if sys.argv[1:] == ["--version"]:
        print(_version.__version__)
        return 0

    # Imported only here so that ``--version`` measures the bootstrap, not these imports.
    import json  # noqa: PLC0415
    from importlib import metadata  # noqa: PLC0415

    import msgspec  # noqa: PLC0415
    import nats  # noqa: PLC0415

    from harmony_fleet.contracts import (  # noqa: PLC0415
        HEARTBEAT,
        DeviceId,
        Heartbeat,
        Role,
        Version,
        encode,
        new_instance_id,
    )

    beat = Heartbeat(
        device_id=DeviceId("probe"),
        instance_id=new_instance_id(),
        agent_version=Version(_version.__version__),
        role=Role.MAIN,
        seq=0,
        sent_at=0.0,
        uptime_s=0.0,
    )
    wire = HEARTBEAT.decode(encode(beat))
    bootstrap: Any = sys.modules.get("_harmony_bootstrap")
    state = dict(getattr(bootstrap, "STATE", {}))
    state.pop("info", None)
    report = {
        "version": _version.__version__,
        "heartbeat_version": wire.agent_version,
        "metadata_version": metadata.version("harmony-fleet"),
        "faults": sorted(_version.BUILD_FAULTS),
        "msgspec": msgspec.__version__,
        "msgspec_core": sys.modules["msgspec._core"].__file__,
        "nats": nats.__file__,
        "harmony_fleet": sys.modules["harmony_fleet"].__file__,
        "argv": sys.argv[1:],
        "sys_path": sys.path,
        "bootstrap": state,
    }
    print(json.dumps(report))
    return 0
