"""Names and argument vectors for systemd, built as data: no shell, no string splicing.

Two places turn our values into systemd input, and both have their own expansion rules:

* ``systemd-run … -- COMMAND ARGS`` hands the vector to systemd over D-Bus as ``ExecStart=``;
  no shell is involved, but systemd (252, Debian 12) still expands ``$VAR`` and ``${VAR}`` in
  each argument when it starts the process, and a lone ``$VAR`` word that is unset *disappears*.
  Every ``$`` is therefore doubled (:func:`escape_run_arg`); measured in the systemd tier.
* A unit file's ``ExecStart=`` line is parsed by systemd: words split on blanks, quotes and C
  escapes, ``%`` specifiers and ``$`` variables. :func:`exec_line` quotes every word and escapes
  all four, so each argument reaches ``execve`` exactly as given.

The values themselves are pattern-checked (device id, version, upgrade id, service name) before
they get here; the escaping is the second line of defence, for paths and URLs that have no
pattern.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from harmony_fleet.contracts.ids import upgrade_id
from harmony_fleet.errors import ConfigError

DEFAULT_SERVICE = "harmony-fleet-agent"
_SERVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$")
_CANDIDATE_INFIX = "-candidate-"
#: Environment variables a candidate copies from the agent that starts it (values never
#: appear on a command line: ``systemd-run -E NAME`` copies from its own environment).
PASSED_ENV_PREFIXES = ("FLEET_", "HARMONY_FLEET_")


def service_name(value: str) -> str:
    """Validate a service name (``harmony-fleet-agent``; a trailing ``.service`` is dropped)."""
    name = value.removesuffix(".service")
    if not _SERVICE_RE.match(name) or ".." in name:
        raise ConfigError(
            f"{value!r} is not a usable service name (letters, digits, '_', '.', '-', "
            "at most 121 characters)"
        )
    return name


def unit_of(service: str) -> str:
    """``<service>.service``."""
    return f"{service_name(service)}.service"


def candidate_unit(service: str, uid: str) -> str:
    """The transient unit of one upgrade's candidate: derived from the id, so a restarted
    agent (old or new) finds it again without any saved handle."""
    return f"{service_name(service)}{_CANDIDATE_INFIX}{upgrade_id(uid)}.service"


def candidate_pattern(service: str) -> str:
    """A ``systemctl list-units`` glob matching every candidate unit of ``service``."""
    return f"{service_name(service)}{_CANDIDATE_INFIX}*.service"


def escape_run_arg(arg: str) -> str:
    """One argument for ``systemd-run``: ``$`` doubled so systemd does not expand it."""
    _no_control(arg)
    return arg.replace("$", "$$")


def transient_argv(
    unit: str,
    command: Sequence[str],
    *,
    description: str,
    properties: Mapping[str, str] = {},
    pass_env: Iterable[str] = (),
    systemd_run: str = "systemd-run",
) -> list[str]:
    """The ``systemd-run`` vector that starts ``command`` as the transient service ``unit``.

    Options come first and the command after ``--``, so no argument of the command can be read
    as an option of ``systemd-run``; property values are checked for newlines (a newline would
    end the assignment).
    """
    if not command:
        raise ConfigError("empty command for a transient unit")
    argv = [systemd_run, f"--unit={unit}", f"--description={_property_value(description)}"]
    for key, value in properties.items():
        if not re.fullmatch(r"[A-Za-z]+", key):
            raise ConfigError(f"bad unit property name {key!r}")
        argv.append(f"--property={key}={_property_value(value)}")
    for name in pass_env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(f"bad environment variable name {name!r}")
        argv.append(f"--setenv={name}")
    argv.append("--")
    argv.extend(escape_run_arg(a) for a in command)
    return argv


def passed_env(environ: Mapping[str, str]) -> list[str]:
    """Names of the variables a candidate inherits (sorted, values left where they are)."""
    return sorted(n for n in environ if n.startswith(PASSED_ENV_PREFIXES))


def _property_value(value: str) -> str:
    _no_control(value)
    return value


def _no_control(value: str) -> None:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(f"control character in a value for systemd: {value!r}")


_UNIT_FILE_ESCAPES = {"\\": "\\\\", '"': '\\"', "%": "%%", "$": "$$"}


def quote_exec_word(arg: str) -> str:
    """One word of a unit file's ``ExecStart=``, double-quoted with every special escaped."""
    _no_control(arg)
    return '"' + "".join(_UNIT_FILE_ESCAPES.get(c, c) for c in arg) + '"'


def exec_line(argv: Sequence[str]) -> str:
    """A unit file ``ExecStart=`` value for ``argv``; the program must be an absolute path."""
    if not argv or not argv[0].startswith("/"):
        raise ConfigError(f"the program in a unit must be an absolute path, got {argv[:1]!r}")
    return " ".join(quote_exec_word(a) for a in argv)


def unit_value(value: str) -> str:
    """A single-line unit file value (``Description=``): no control characters, ``%`` escaped."""
    _no_control(value)
    return value.replace("%", "%%")
