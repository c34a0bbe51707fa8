"""The CLI's context: which NATS to reach, with which credentials and CA (like ``nats context``).

``fleet server`` writes it when it starts (secure mode): ``context.json`` naming the server's
URL, the admin's ``.creds`` and the CA bundle, the two files copied beside it, all in
``$XDG_CONFIG_HOME/harmony-fleet/`` (directory 0700, files 0600). Every ``fleet`` command that
talks to NATS reads it when its flags do not say otherwise (:func:`Context.find`), so the hand-run
fleet and the demo need no new flags. ``FLEET_CONTEXT`` names another context file; a context
named that way must exist.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from harmony_fleet.adapters.nats.files import write_secret
from harmony_fleet.errors import ConfigError

log = logging.getLogger(__name__)

ENV = "FLEET_CONTEXT"


def default_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "harmony-fleet" / "context.json"


@dataclass(frozen=True)
class Context:
    """Where the fleet's NATS is and how to prove who we are to it."""

    url: str
    creds: str
    ca: str
    path: Path

    @classmethod
    def write_for(cls, path: Path, *, url: str, creds: Path, ca: Path) -> Context:
        """Copy ``creds`` and ``ca`` beside ``path`` and write the context naming them."""
        try:
            folder = path.parent
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(folder, 0o700)
            own_creds, own_ca = folder / "admin.creds", folder / "ca.pem"
            write_secret(own_creds, creds.read_bytes())
            write_secret(own_ca, ca.read_bytes())
            body = {"url": url, "creds": str(own_creds), "ca": str(own_ca)}
            write_secret(path, json.dumps(body, indent=1) + "\n")
        except OSError as exc:
            raise ConfigError(f"cannot write the fleet context {path}: {exc}") from exc
        log.info("fleet context written", extra={"path": str(path), "url": url})
        return cls(url=url, creds=str(own_creds), ca=str(own_ca), path=path)

    @classmethod
    def load(cls, path: Path) -> Context:
        """The context in ``path``; :class:`ConfigError` naming what is wrong with it."""
        try:
            raw = json.loads(path.read_text())
            context = cls(url=raw["url"], creds=raw["creds"], ca=raw["ca"], path=path)
        except FileNotFoundError:
            raise ConfigError(
                f"fleet context {path} does not exist (run `fleet server`, or unset {ENV})"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"fleet context {path} is not readable: {exc!r}") from exc
        return context

    @classmethod
    def find(cls) -> Context | None:
        """``$FLEET_CONTEXT`` (which must exist), else the default context if there is one (a
        home this process cannot enter, as the sandboxed agent's unit, has none)."""
        named = os.environ.get(ENV)
        if named:
            return cls.load(Path(named))
        path = default_path()
        try:
            present = path.exists()
        except OSError as exc:  # a home the process may not enter (a unit's ProtectHome=)
            log.debug("no fleet context: %s", exc)
            return None
        return cls.load(path) if present else None
