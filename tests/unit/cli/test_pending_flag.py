"""``fleet operator --max-pending-bytes``: a budget that holds no heartbeat is refused before
anything starts; the environment variable the Deployment sets is the same flag."""

from __future__ import annotations

from click.testing import CliRunner

from harmony_fleet.adapters.nats.slow import MIN_PENDING_BYTES
from harmony_fleet.cli.operator import operator_cmd


def test_a_budget_below_one_message_is_a_usage_error() -> None:
    done = CliRunner().invoke(operator_cmd, ["--max-pending-bytes", str(MIN_PENDING_BYTES - 1)])
    assert done.exit_code == 2
    assert "--max-pending-bytes" in done.output


def test_the_budget_is_read_from_fleet_max_pending_bytes() -> None:
    done = CliRunner().invoke(operator_cmd, [], env={"FLEET_MAX_PENDING_BYTES": "12"})
    assert done.exit_code == 2
    assert "--max-pending-bytes" in done.output and "12" in done.output


def test_help_names_the_flag_and_its_variable() -> None:
    done = CliRunner().invoke(operator_cmd, ["--help"], terminal_width=200)
    assert done.exit_code == 0
    assert "--max-pending-bytes" in done.output and "FLEET_MAX_PENDING_BYTES" in done.output
