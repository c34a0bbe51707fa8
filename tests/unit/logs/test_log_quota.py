"""The log stream's per-device quota: the arithmetic docs/logs.md states, and the subjects a
device's credentials allow (no log subject outside the two the stream keeps per device)."""

from __future__ import annotations

from harmony_fleet.adapters.nats.fleet_kv import STORED_SUBJECTS_PER_DEVICE, LogStreamLimits
from harmony_fleet.adapters.nats.permissions import device_permissions
from harmony_fleet.contracts.logs import LOG_LINE_MAX_BYTES, stored_subject


def test_a_device_stores_its_units_under_one_subject_and_its_agent_under_another() -> None:
    assert stored_subject("edge-01", "agent") == "fleet.edge-01.logs.agent"
    assert stored_subject("edge-01", "unit.nginx") == "fleet.edge-01.logs.units"
    assert stored_subject("edge-01", "unit.other") == "fleet.edge-01.logs.units"


def test_the_quota_is_two_subjects_of_lines_at_the_size_limit() -> None:
    limits = LogStreamLimits()
    assert STORED_SUBJECTS_PER_DEVICE == 2
    assert limits.device_quota_bytes == 2 * 10_000 * LOG_LINE_MAX_BYTES
    assert limits.max_bytes == -1, "no fleet-wide ceiling that one device could fill"
    sized = LogStreamLimits(max_devices=1000)
    assert sized.max_bytes == 1000 * sized.device_quota_bytes
    config = sized.config()
    assert config.max_bytes == sized.max_bytes
    assert config.subject_transform is not None
    assert config.subject_transform.src == "fleet.*.logs.unit.*"
    assert config.subject_transform.dest == "fleet.{{wildcard(1)}}.logs.units"


def test_a_device_may_publish_on_its_two_log_subjects_only() -> None:
    allowed = device_permissions("edge-01").pub_allow
    logs = sorted(s for s in allowed if ".logs." in s)
    assert logs == ["fleet.edge-01.logs.agent", "fleet.edge-01.logs.unit.*"]
