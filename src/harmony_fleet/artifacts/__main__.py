"""``python -m harmony_fleet.artifacts build --version V --out DIR [--fault NAME]...``

Prints the manifest JSON on success; on a refused input prints one line on stderr and exits 2.
Kept on argparse (not the ``fleet`` CLI) so it works before and independently of the CLI package.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harmony_fleet.artifacts.builder import DEFAULT_ENTRY, DEFAULT_NAME, build_artifact
from harmony_fleet.artifacts.manifest import encode_manifest
from harmony_fleet.errors import FleetError


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the ``build`` subcommand."""
    parser = argparse.ArgumentParser(prog="python -m harmony_fleet.artifacts")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build a versioned single-file agent artifact")
    build.add_argument("--version", required=True, help="version to bake in (heartbeats carry it)")
    build.add_argument("--out", required=True, type=Path, help="output directory")
    build.add_argument(
        "--fault", action="append", default=[], help="bake a named fault (demo/tests only)"
    )
    build.add_argument("--name", default=DEFAULT_NAME, help="artifact name (file name prefix)")
    build.add_argument("--entry", default=DEFAULT_ENTRY, help="module:function to run")
    args = parser.parse_args(argv)
    try:
        manifest = build_artifact(
            args.version, args.out, faults=args.fault, name=args.name, entry=args.entry
        )
    except FleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(encode_manifest(manifest))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
