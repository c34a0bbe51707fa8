"""``fleet schema export DIR``: write the JSON Schema of every wire type."""

from __future__ import annotations

from pathlib import Path

import click

from harmony_fleet.contracts.schema import export_schemas


@click.group("schema")
def schema_group() -> None:
    """Wire contracts as JSON Schema."""


@schema_group.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def export_cmd(directory: Path) -> None:
    """Write <type>.schema.json for every wire type into DIRECTORY."""
    for path in export_schemas(directory):
        click.echo(str(path))


def register(group: click.Group) -> None:
    group.add_command(schema_group)
