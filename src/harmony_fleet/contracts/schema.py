"""JSON Schema export for every wire type (``fleet schema export DIR``).

Other languages and tools (a Kubernetes CRD, a dashboard, a test in another repo) read these
files instead of our Python: the contracts are the source of truth, the schemas are generated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from harmony_fleet.contracts._codec import encode
from harmony_fleet.contracts.artifact_manifest import ArtifactManifest
from harmony_fleet.contracts.commands import Command, Reply, UpgradeStopArgs
from harmony_fleet.contracts.device_files import FailureCount, PidRecord, RollbackNote, WatchNote
from harmony_fleet.contracts.heartbeat import Heartbeat
from harmony_fleet.contracts.identity import DeviceIdentity
from harmony_fleet.contracts.lease import OperatorLease
from harmony_fleet.contracts.local_state import LocalState
from harmony_fleet.contracts.logs import LogLine
from harmony_fleet.contracts.registry import DeviceRecord
from harmony_fleet.contracts.rollout import DeviceProgress, Rollout, RolloutStatus
from harmony_fleet.contracts.upgrade import UpgradeMarker, UpgradeStatus

#: Every top-level wire type (messages, KV values, files), by the file stem of its schema.
WIRE_TYPES: dict[str, type[Any]] = {
    "heartbeat": Heartbeat,
    "command": Command,
    "reply": Reply,
    "upgrade_stop_args": UpgradeStopArgs,
    "upgrade_marker": UpgradeMarker,
    "upgrade_status": UpgradeStatus,
    "device_record": DeviceRecord,
    "device_identity": DeviceIdentity,
    "operator_lease": OperatorLease,
    "log_line": LogLine,
    "local_state": LocalState,
    "watch_note": WatchNote,
    "rollback_note": RollbackNote,
    "failure_count": FailureCount,
    "pid_record": PidRecord,
    "artifact_manifest": ArtifactManifest,
    "rollout": Rollout,
    "rollout_status": RolloutStatus,
    "device_progress": DeviceProgress,
}


def schema_of(type_: type[Any]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one wire type."""
    schema: dict[str, Any] = msgspec.json.schema(type_)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = type_.__name__
    return schema


def export_schemas(directory: Path) -> list[Path]:
    """Write ``<name>.schema.json`` for every wire type into ``directory``; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, type_ in WIRE_TYPES.items():
        path = directory / f"{name}.schema.json"
        path.write_bytes(msgspec.json.format(encode(schema_of(type_)), indent=2) + b"\n")
        written.append(path)
    return written
