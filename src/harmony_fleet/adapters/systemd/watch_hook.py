"""The post-commit watch under systemd: the unit's hooks, run from a launcher installed once.

In process mode the supervisor judges a freshly committed version (``adapters.process.
supervisor``). Under systemd nothing of ours outlives the main instance, so the judge is the
unit itself, with systemd's own machinery around a launcher that is *not* the version on trial:

* ``<prefix>/launcher/agent`` is a copy of the artifact ``fleet agent install`` installed,
  written once by the install and never by an upgrade. Its code reads the notes; the new
  version's code never gets a say.
* ``ExecStopPost=`` runs ``launcher agent watch-hook post-stop`` after *every* end of the main
  process. systemd hands it ``$SERVICE_RESULT``, ``$EXIT_CODE`` and ``$EXIT_STATUS``
  (:class:`ServiceExit`), and :class:`~harmony_fleet.adapters.device.watcher.PostCommitWatcher`
  counts a failed run of the watched version in ``post-commit-failures.json``. At
  ``max_failures`` it writes the rollback note (exit codes, the run's last journal lines) and
  points ``current`` back at the previous version; ``Restart=always`` then starts that one.
* ``WatchdogSec=`` is the silence check: the main pings systemd on every heartbeat tick
  (``adapters.systemd.notify``); one that stops is killed by systemd with ``SIGABRT`` and the
  hook sees ``SERVICE_RESULT=watchdog``: inside the window that is a rollback at once, reason
  ``no_heartbeat``; outside it, an ordinary restart of a hung agent.
* ``ExecStartPre=`` runs ``watch-hook pre-start``: finish a rollback whose note was written but
  whose swap was not (power lost between the two).

Both hooks are ``-``-prefixed in the unit: a hook that fails is logged and never stops the agent
from starting. Neither imports the CLI (``cli.entry`` dispatches here before click is loaded):
they run on every restart, so they are kept to one small Python start each.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harmony_fleet.adapters.device.layout import AgentLayout
from harmony_fleet.adapters.device.notes import RUN_DIR
from harmony_fleet.adapters.device.watcher import PostCommitWatcher
from harmony_fleet.contracts.device_files import RollbackNote
from harmony_fleet.errors import ConfigError, FleetError
from harmony_fleet.logging_setup import configure

log = logging.getLogger(__name__)

#: Journal lines of the failed run kept in a rollback note.
LOG_TAIL = 50
#: How long the hook waits for ``journalctl`` (a log tail helps; it never delays a rollback long).
JOURNAL_TIMEOUT_S = 10.0
#: ``$SERVICE_RESULT`` values that are the service's own failure (``systemd.exec(5)``).
FAILED_RESULTS = frozenset(
    {"exit-code", "signal", "core-dump", "oom-kill", "resources", "start-limit-hit"}
)


@dataclass(frozen=True, kw_only=True)
class ServiceExit:
    """How the main process ended, from the variables systemd gives ``ExecStopPost=``."""

    result: str
    """``$SERVICE_RESULT``: ``success``, ``exit-code``, ``signal``, ``core-dump``,
    ``watchdog``, ``timeout``, ``oom-kill``, ``resources``, ..."""
    exit_code: int | None = None
    signal: str | None = None

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> ServiceExit:
        result = env.get("SERVICE_RESULT", "")
        if not result:
            raise ConfigError(
                "SERVICE_RESULT is not set: `watch-hook post-stop` runs as a unit's ExecStopPost="
            )
        kind, status = env.get("EXIT_CODE", ""), env.get("EXIT_STATUS", "")
        if kind == "exited":
            try:
                return cls(result=result, exit_code=int(status))
            except ValueError:
                return cls(result=result)
        if kind in ("killed", "dumped") and status:
            return cls(result=result, signal=status if status.startswith("SIG") else f"SIG{status}")
        return cls(result=result)

    @property
    def failed(self) -> bool:
        """The version's own failure (a crash, a kill we did not ask for, a failed exec)."""
        return self.result in FAILED_RESULTS

    @property
    def watchdog(self) -> bool:
        """systemd killed a main that stopped pinging its watchdog (a silent agent)."""
        return self.result == "watchdog"

    def describe(self) -> str:
        if self.exit_code is not None:
            return f"exit code {self.exit_code}"
        return self.signal or self.result


def journal_tail(
    invocation_id: str | None, unit: str | None, lines: int = LOG_TAIL
) -> tuple[str, ...]:
    """The last ``lines`` journal messages of one run (``$INVOCATION_ID``), else of the unit.

    Empty when the journal cannot be read: a log tail helps a person, it is never a reason to
    skip or delay a rollback.
    """
    argv = ["journalctl", "--no-pager", "-o", "cat", "-n", str(lines)]
    if invocation_id:
        argv.append(f"_SYSTEMD_INVOCATION_ID={invocation_id}")
    elif unit:
        argv += ["-u", unit]
    else:
        return ()
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=JOURNAL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(done.stdout.splitlines()[-lines:])


def post_stop(
    layout: AgentLayout,
    run_dir: Path,
    ended: ServiceExit,
    *,
    log_tail: Callable[[], Iterable[str]] = tuple,
) -> RollbackNote | None:
    """Judge one end of the main process; the rollback it performed, if any.

    The run was of whatever ``current`` names now: only the old agent's handover moves
    ``current`` under a running main, and it then exits cleanly, which is never counted.
    """
    try:
        running = layout.current_version()
    except FleetError as exc:
        log.error("post-stop: cannot read current", extra={"error": str(exc)})
        return None
    watcher = PostCommitWatcher(layout, run_dir, log_tail=log_tail)
    note = watcher.watching(running)
    if note is None:
        return None
    silence = None
    if ended.watchdog:
        silence = (
            f"{note.target} stopped heartbeating: killed by the systemd watchdog "
            f"({ended.describe()})"
        )
    return watcher.on_exit(
        running or "",
        ended.exit_code,
        ended.signal,
        stopping=not (ended.failed or ended.watchdog),
        silence=silence,
    )


def pre_start(layout: AgentLayout, run_dir: Path) -> None:
    """Before every start: finish a rollback that was noted but not swapped."""
    PostCommitWatcher(layout, run_dir).settle()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleet agent watch-hook",
        description="The agent unit's post-commit watch hooks (run by systemd, not by hand).",
    )
    parser.add_argument("hook", choices=["pre-start", "post-stop"])
    parser.add_argument("--prefix", type=Path, required=True, help="the install prefix")
    parser.add_argument("--state-dir", type=Path, required=True, help="the agent's state dir")
    parser.add_argument("--service", default=None, help="the unit (journal fallback)")
    return parser


def main(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> int:
    """``fleet agent watch-hook {pre-start,post-stop} --prefix P --state-dir S``.

    Exit 0 whatever the verdict (the unit ignores a failure anyway), 2 on bad arguments or when
    run outside a unit, 1 when the notes could not be written; one line on stderr each time.
    """
    configure(stream=sys.stderr)  # key=value lines in the unit's journal, like the agent's
    args = _parser().parse_args(list(argv))
    env = os.environ if environ is None else environ
    layout, run_dir = AgentLayout(args.prefix), args.state_dir / RUN_DIR
    try:
        if args.hook == "pre-start":
            pre_start(layout, run_dir)
            return 0
        ended = ServiceExit.from_environ(env)
        done = post_stop(
            layout,
            run_dir,
            ended,
            log_tail=lambda: journal_tail(env.get("INVOCATION_ID"), args.service),
        )
    except ConfigError as exc:
        print(f"watch-hook: error: {exc}", file=sys.stderr)
        return 2
    except FleetError as exc:
        print(f"watch-hook: error: {exc}", file=sys.stderr)
        return 1
    if done is not None:
        print(
            f"watch-hook: rolled back {done.target} -> {done.previous} ({done.reason.value}): "
            f"{done.detail}",
            file=sys.stderr,
        )
    return 0
