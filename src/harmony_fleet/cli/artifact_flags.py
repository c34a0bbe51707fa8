"""Where artifacts may come from, as flags: ``--allow-http-artifacts`` and ``--artifact-ca``.

``fleet agent run`` and ``fleet agent install`` take both (and hand them on: to candidates,
into the installed unit); ``fleet upgrade`` takes ``--allow-http-artifacts`` so that a plain
``http`` URL is refused when it is asked for, not minutes later on the device. The rules
themselves, and :func:`artifact_access` and :func:`artifact_argv` (the agent's own entry takes the
same flags without click), are :mod:`harmony_fleet.adapters.http.urls`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from harmony_fleet.adapters.http.urls import (
    ALLOW_HTTP_FLAG,
    ArtifactAccess,
    artifact_access,
    artifact_argv,
    check_artifact_url,
)
from harmony_fleet.cli._common import bad_flag
from harmony_fleet.errors import DownloadRejected

__all__ = [
    "allow_http_option",
    "artifact_access",
    "artifact_argv",
    "artifact_options",
    "check_url_flag",
]

F = TypeVar("F", bound=Callable[..., Any])

ALLOW_HTTP_ENV = "FLEET_ALLOW_HTTP_ARTIFACTS"
ARTIFACT_CA_ENV = "FLEET_ARTIFACT_CA"


def allow_http_option(f: F) -> F:
    """``--allow-http-artifacts`` (``FLEET_ALLOW_HTTP_ARTIFACTS``)."""
    return click.option(
        ALLOW_HTTP_FLAG,
        "allow_http_artifacts",
        is_flag=True,
        envvar=ALLOW_HTTP_ENV,
        show_envvar=True,
        help="Take plain http artifact URLs from any host (anyone on the way can swap the "
        "bytes). Without it: https, or http from this machine only.",
    )(f)


def artifact_options(f: F) -> F:
    """``--allow-http-artifacts`` and ``--artifact-ca FILE``."""
    f = click.option(
        "--artifact-ca",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        envvar=ARTIFACT_CA_ENV,
        show_envvar=True,
        help="A PEM CA bundle trusted for https artifact servers, besides the system's roots "
        "(a private CA of your artifact server).",
    )(f)
    return allow_http_option(f)


def check_url_flag(flag: str, url: str, allow_http: bool) -> None:
    """Refuse ``url`` given as ``flag`` that no device may download from: one line, exit 2."""
    try:
        check_artifact_url(url, ArtifactAccess(allow_http=allow_http))
    except DownloadRejected as exc:
        raise bad_flag(flag, str(exc)) from None
