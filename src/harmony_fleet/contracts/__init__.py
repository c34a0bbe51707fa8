"""The wire contracts: every message and KV value that crosses a process boundary.

Strictly validated on decode (:mod:`._codec`), versioned with a ``v`` field, exported as JSON
Schema (:mod:`.schema`). Inside the processes these frozen values are the ones passed around;
nothing else in the package defines a wire format. Files that one process writes and another
(maybe another version) reads are wire formats too: the agent's local state file
(:mod:`.local_state`).
"""

from harmony_fleet.contracts import subjects
from harmony_fleet.contracts._codec import MAX_MESSAGE_BYTES, Codec, encode
from harmony_fleet.contracts.commands import (
    Command,
    PingArgs,
    RawCommand,
    Reply,
    ReplyCode,
    UpgradeStopArgs,
    Verb,
    decode_args,
    new_command,
)
from harmony_fleet.contracts.heartbeat import Heartbeat, Role
from harmony_fleet.contracts.ids import (
    DeviceId,
    InstanceId,
    UpgradeId,
    Version,
    device_id,
    new_instance_id,
    new_upgrade_id,
    sha256_hex,
    upgrade_id,
    version,
)
from harmony_fleet.contracts.local_state import (
    LOCAL_STATE_MAX_BYTES,
    InFlight,
    LocalState,
    UpgradeInHand,
    UpgradeState,
)
from harmony_fleet.contracts.logs import LOG_LINE_MAX_BYTES, LogLevel, LogLine
from harmony_fleet.contracts.registry import DeviceRecord, InstanceSeen, UpgradeSummary
from harmony_fleet.contracts.rollout import (
    BUCKET_ROLLOUT_PROGRESS,
    BUCKET_ROLLOUT_STATUS,
    BUCKET_ROLLOUTS,
    DeviceProgress,
    DeviceState,
    MaintenanceWindow,
    Rollout,
    RolloutPhase,
    RolloutStatus,
    Share,
)
from harmony_fleet.contracts.upgrade import (
    TERMINAL_PHASES,
    AgentUpgradePhase,
    ErrorCode,
    Progress,
    UpgradeMarker,
    UpgradeStatus,
    UpgradeTimeouts,
)

HEARTBEAT = Codec(Heartbeat)
COMMAND = Codec(Command)
RAW_COMMAND = Codec(RawCommand)
REPLY = Codec(Reply)
UPGRADE_MARKER = Codec(UpgradeMarker)
UPGRADE_STATUS = Codec(UpgradeStatus)
DEVICE_RECORD = Codec(DeviceRecord)
LOG_LINE = Codec(LogLine, max_bytes=LOG_LINE_MAX_BYTES)
LOCAL_STATE = Codec(LocalState, max_bytes=LOCAL_STATE_MAX_BYTES)
ROLLOUT = Codec(Rollout)
ROLLOUT_STATUS = Codec(RolloutStatus)
DEVICE_PROGRESS = Codec(DeviceProgress)

__all__ = [
    "BUCKET_ROLLOUTS",
    "BUCKET_ROLLOUT_PROGRESS",
    "BUCKET_ROLLOUT_STATUS",
    "COMMAND",
    "DEVICE_PROGRESS",
    "DEVICE_RECORD",
    "HEARTBEAT",
    "LOCAL_STATE",
    "LOCAL_STATE_MAX_BYTES",
    "LOG_LINE",
    "LOG_LINE_MAX_BYTES",
    "MAX_MESSAGE_BYTES",
    "RAW_COMMAND",
    "REPLY",
    "ROLLOUT",
    "ROLLOUT_STATUS",
    "TERMINAL_PHASES",
    "UPGRADE_MARKER",
    "UPGRADE_STATUS",
    "AgentUpgradePhase",
    "Codec",
    "Command",
    "DeviceId",
    "DeviceProgress",
    "DeviceRecord",
    "DeviceState",
    "ErrorCode",
    "Heartbeat",
    "InFlight",
    "InstanceId",
    "InstanceSeen",
    "LocalState",
    "LogLevel",
    "LogLine",
    "MaintenanceWindow",
    "PingArgs",
    "Progress",
    "RawCommand",
    "Reply",
    "ReplyCode",
    "Role",
    "Rollout",
    "RolloutPhase",
    "RolloutStatus",
    "Share",
    "UpgradeId",
    "UpgradeInHand",
    "UpgradeMarker",
    "UpgradeState",
    "UpgradeStatus",
    "UpgradeStopArgs",
    "UpgradeSummary",
    "UpgradeTimeouts",
    "Verb",
    "Version",
    "decode_args",
    "device_id",
    "encode",
    "new_command",
    "new_instance_id",
    "new_upgrade_id",
    "sha256_hex",
    "subjects",
    "upgrade_id",
    "version",
]
