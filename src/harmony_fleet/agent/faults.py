"""Named faults a build can carry, so the demo and the fault tests use *real* broken artifacts.

A release build has none. A demo or test build bakes names into ``_build_version.FAULTS`` (see
``harmony_fleet.artifacts``); the agent reads them here and misbehaves exactly as named:

``no-heartbeat``          runs, answers commands, never publishes a heartbeat
``crash-after=S``         exits with code 3, S seconds after start (any role)
``crash-as-main-after=S`` same, but only when running as the service's main instance
``stop-heartbeat-as-main-after=S``  as the main instance, stops heartbeating S seconds after
                          start but keeps running and answering commands (a hung main loop)
``self-test-fail``        ``--self-test`` reports a failed check and exits 1
``self-test-hang``        ``--self-test`` never returns (the caller's timeout must fire)
"""

from __future__ import annotations

from dataclasses import dataclass

from harmony_fleet.errors import ConfigError

KNOWN = (
    "no-heartbeat",
    "crash-after",
    "crash-as-main-after",
    "stop-heartbeat-as-main-after",
    "self-test-fail",
    "self-test-hang",
)


@dataclass(frozen=True, kw_only=True)
class Faults:
    no_heartbeat: bool = False
    crash_after_s: float | None = None
    crash_as_main_after_s: float | None = None
    stop_heartbeat_as_main_after_s: float | None = None
    self_test_fail: bool = False
    self_test_hang: bool = False

    @property
    def any(self) -> bool:
        return self != Faults()


def parse_faults(names: frozenset[str] | tuple[str, ...]) -> Faults:
    """Parse ``FAULTS`` names; an unknown name is a build error, said clearly."""
    values: dict[str, object] = {}
    for raw in names:
        name, _, arg = raw.partition("=")
        if name not in KNOWN:
            raise ConfigError(f"unknown build fault {raw!r}; known: {', '.join(KNOWN)}")
        key = name.replace("-", "_")
        if name.endswith("after"):
            try:
                values[f"{key}_s"] = float(arg)
            except ValueError as exc:
                raise ConfigError(f"build fault {raw!r} needs seconds, e.g. {name}=5") from exc
        else:
            values[key] = True
    return Faults(**values)  # type: ignore[arg-type]
