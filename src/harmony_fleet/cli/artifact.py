"""``fleet artifact build``: a versioned single-file agent artifact and its manifest."""

from __future__ import annotations

from pathlib import Path

import click
import msgspec

from harmony_fleet.artifacts import build_artifact
from harmony_fleet.cli._common import print_json


@click.group("artifact")
def artifact_group() -> None:
    """Agent artifacts (single-file zipapps with their dependencies)."""


@artifact_group.command("build")
@click.option("--version", "version_", required=True, help="Version baked into the artifact.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("dist"),
    show_default=True,
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    hidden=True,
    help="Bake a named fault (demo and tests only).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def build_cmd(version_: str, out: Path, faults: tuple[str, ...], as_json: bool) -> None:
    """Build <out>/harmony-fleet-agent-VERSION.pyz and its .manifest.json."""
    manifest = build_artifact(version_, out, faults=faults)
    if as_json:
        print_json(msgspec.to_builtins(manifest))
        return
    click.echo(f"{out / manifest.file}  {manifest.size} bytes")
    click.echo(f"sha256 {manifest.sha256}")
    click.echo(f"python {manifest.python_requires} on {manifest.platform}")


def register(group: click.Group) -> None:
    group.add_command(artifact_group)
