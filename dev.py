#!/usr/bin/env python3
"""One entry point for a fresh clone: ``python3 dev.py demo`` and ``python3 dev.py test``.

It needs only Python 3.11+ and the package registries. It creates ``.venv`` beside this file,
installs harmony-fleet with its development extras into it (again only when pyproject.toml
changed), then runs the command inside it:

    python3 dev.py demo [ARGS]   the main job: `fleet demo` on the embedded default
    python3 dev.py test [ARGS]   ruff, mypy --strict, import-linter, then pytest [ARGS]
    python3 dev.py fleet ARGS    any `fleet` command
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("FLEET_VENV", ROOT / ".venv"))
BIN = VENV / "bin"


def ensure_env() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be run by any python3
        sys.exit(f"dev.py: Python 3.11 or newer is needed, this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print(f"dev.py: creating {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / ".harmony-fleet-installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    print("dev.py: installing harmony-fleet and its dev tools into the venv", file=sys.stderr)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    stamp.write_text(digest)


def run(*cmd: str) -> int:
    print("dev.py: $", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, cwd=ROOT, check=False).returncode


def test(args: list[str]) -> int:
    for step in (
        (str(BIN / "ruff"), "check", "src", "tests", "bench"),
        (str(BIN / "ruff"), "format", "--check", "src", "tests", "bench"),
        (str(BIN / "mypy"),),
        (str(BIN / "lint-imports"),),
    ):
        code = run(*step)
        if code:
            return code
    # pytest's exit code 5 (no tests collected) is a failure for us, and stays non-zero.
    return run(str(BIN / "python"), "-m", "pytest", *args)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in ("demo", "test", "fleet"):
        print(f"dev.py: unknown command {command!r} (demo, test, fleet)", file=sys.stderr)
        return 2
    ensure_env()
    if command == "test":
        return test(rest)
    fleet = str(BIN / "fleet")
    return run(fleet, "demo", *rest) if command == "demo" else run(fleet, *rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
