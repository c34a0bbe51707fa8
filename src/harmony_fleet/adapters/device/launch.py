"""How an agent artifact is started: one argument vector, never a shell.

The same :class:`LaunchSpec` builds the self-test, the candidate and (through the supervisor or
the systemd unit) the main instance, so the three cannot drift apart; :func:`child_env` is the
environment every one of them gets when we start it ourselves. Every value that ends up on
a command line (device id, version, upgrade id) has been validated by the contracts' patterns,
and the vector is passed to ``exec`` as a list: there is no shell to inject into.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harmony_fleet.contracts.heartbeat import Role


@dataclass(frozen=True, kw_only=True)
class LaunchSpec:
    """Everything needed to start ``<artifact> agent run …`` for one device."""

    python: str = field(default_factory=lambda: sys.executable)
    """Interpreter that runs artifacts (the one running this agent, by default)."""
    device_id: str
    state_dir: Path
    nats_args: tuple[str, ...] = ()
    """``--nats URL`` (repeated) and credential flags, exactly as the main instance got them."""
    extra_args: tuple[str, ...] = ()
    """Anything else the main instance runs with (``--heartbeat-interval``, ``--log-json``...)."""

    def agent_args(self, *, role: Role = Role.MAIN, upgrade_id: str | None = None) -> list[str]:
        """Arguments after the artifact path: ``agent run --device-id … [--role candidate …]``."""
        args = ["agent", "run", "--device-id", self.device_id, "--state-dir", str(self.state_dir)]
        args += [*self.nats_args, *self.extra_args]
        if role is Role.CANDIDATE:
            if upgrade_id is None:
                raise ValueError("a candidate needs its upgrade_id")
            args += ["--role", Role.CANDIDATE.value, "--upgrade-id", upgrade_id]
        return args

    def argv(
        self,
        artifact: Path,
        *,
        role: Role = Role.MAIN,
        upgrade_id: str | None = None,
        self_test: bool = False,
    ) -> list[str]:
        """The full vector: ``[python, artifact, agent, run, …]`` (plus ``--self-test``)."""
        argv = [self.python, str(artifact), *self.agent_args(role=role, upgrade_id=upgrade_id)]
        if self_test:
            argv.append("--self-test")
        return argv


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of an artifact we start: ours, plus ``extra``, unbuffered output.

    ``PYTHONUNBUFFERED=1`` so that a child killed on a timeout has not lost its last lines (its
    traceback, usually) in a buffer: they are what a person reads in the status.
    """
    return {**os.environ, **(extra or {}), "PYTHONUNBUFFERED": "1"}
