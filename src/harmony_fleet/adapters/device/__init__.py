"""The device side's files and the launcher's half of the post-commit watch, whatever the platform.

Organised by role:

* ``layout`` (``versions/<v>/``, ``current``), ``fs`` (durable writes, hashes), ``errors``;
* ``files``: :class:`~harmony_fleet.adapters.device.files.AgentFiles`, the one
  ``DeviceFiles`` (staging, swap, revert's file half, the watch notes, GC);
* ``notes``: the post-commit watch's files in the run dir, both sides' reading and writing;
* ``watcher``: the launcher's judge of a watched main, shared by the process-mode supervisor
  (``adapters.process.supervisor``) and the systemd unit's hooks (``adapters.systemd``);
* ``state_store`` (the agent's local state file) and ``launch`` (how an artifact is started).

Everything here survives power loss and SIGKILL on a small device: symlinks are replaced
atomically, files are written beside their final name and renamed, folders are fsynced.
``OSError`` is wrapped (:class:`DiskError`, or :class:`LayoutBroken` when the tree itself is
wrong), so callers only catch :mod:`harmony_fleet.errors` types.

Nothing heavy is imported here: the systemd hooks load ``watcher`` on every restart.
"""

from harmony_fleet.adapters.device.errors import DiskError, LayoutBroken
from harmony_fleet.adapters.device.layout import AgentLayout
from harmony_fleet.adapters.device.state_store import FileStateStore

__all__ = ["AgentLayout", "DiskError", "FileStateStore", "LayoutBroken"]
