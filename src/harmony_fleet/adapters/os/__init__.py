"""The agent's own files on the device: the versioned layout and the local state file.

Everything here is about surviving power loss and SIGKILL on a small device: symlinks are
replaced atomically (``os.replace`` over the old link, then ``fsync`` of the folder), files are
written beside their final name and renamed, and a first, non-versioned install is healed into
the layout without ever leaving the service without an executable to start.

``OSError`` is wrapped here (:class:`DiskError`, or :class:`LayoutBroken` when the tree itself
is wrong), so callers only catch :mod:`harmony_fleet.errors` types.
"""

from harmony_fleet.adapters.os.errors import DiskError, LayoutBroken
from harmony_fleet.adapters.os.layout import AgentLayout
from harmony_fleet.adapters.os.state_store import FileStateStore

__all__ = ["AgentLayout", "DiskError", "FileStateStore", "LayoutBroken"]
