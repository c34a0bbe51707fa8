"""Running artifacts as real processes: self-contained, extract once, race-safe, fall back, refuse.

Every run uses the base interpreter with ``-S`` unless the test says otherwise: no
site-packages at all, so msgspec (compiled), nats-py and harmony_fleet can only come from the
artifact.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from artifact_support import (
    BASE_PYTHON,
    PROBE_FAULTS,
    PROBE_VERSION,
    RUN_TIMEOUT,
    Built,
    clean_env,
    probe,
    run_artifact,
)

from harmony_fleet.artifacts import _bootstrap, build_artifact

MARKER = _bootstrap.MARKER


def _extraction_dirs(parent: Path) -> list[Path]:
    return sorted(p for p in parent.iterdir() if p.name.startswith(".harmony-fleet-agent-"))


def test_self_contained_run_reports_the_baked_version(fresh_artifact: Path, built: Built) -> None:
    report = probe(fresh_artifact, "agent", "run", "--flag")
    site_dir = fresh_artifact.parent / f".harmony-fleet-agent-{built.manifest.payload_digest[:12]}"
    assert report["bootstrap"] == {
        "artifact": str(fresh_artifact),
        "site_dir": str(site_dir),
        "extracted": True,
    }
    # The version the heartbeat carries is the one baked at build time, everywhere it is read.
    assert report["version"] == report["heartbeat_version"] == PROBE_VERSION
    assert report["metadata_version"] == PROBE_VERSION
    assert tuple(report["faults"]) == PROBE_FAULTS
    # Compiled msgspec and pure nats-py both come from the extraction.
    assert report["msgspec_core"].startswith(str(site_dir) + os.sep)
    assert report["msgspec_core"].endswith(".so")
    assert report["nats"].startswith(str(site_dir) + os.sep)
    assert report["harmony_fleet"].startswith(str(site_dir) + os.sep)
    assert report["argv"] == ["agent", "run", "--flag"]
    assert report["sys_path"][0] == str(site_dir)
    assert (site_dir / MARKER).read_text().strip() == built.manifest.payload_digest
    assert _extraction_dirs(fresh_artifact.parent) == [site_dir]


def test_run_through_the_current_symlink_extracts_into_the_version_dir(
    fresh_artifact: Path,
) -> None:
    """systemd runs ``current/<artifact>``: deleting ``versions/<v>/`` removes the extraction."""
    version_dir = fresh_artifact.parent
    current = version_dir.parent.parent / "current"
    current.symlink_to(version_dir, target_is_directory=True)
    report = probe(current / fresh_artifact.name)
    site_dir = Path(report["bootstrap"]["site_dir"])
    assert site_dir.parent == version_dir
    assert _extraction_dirs(version_dir) == [site_dir]


def test_host_site_packages_and_pythonpath_are_ignored(
    fresh_artifact: Path, tmp_path: Path
) -> None:
    """With the venv's own Python (harmony_fleet installed editable), nothing leaks in."""
    poison = tmp_path / "poison"
    (poison / "msgspec").mkdir(parents=True)
    (poison / "msgspec" / "__init__.py").write_text("raise ImportError('host msgspec used')\n")
    report = probe(fresh_artifact, python=sys.executable, flags=(), env={"PYTHONPATH": str(poison)})
    site_dir = report["bootstrap"]["site_dir"]
    assert report["harmony_fleet"].startswith(site_dir + os.sep)
    assert report["msgspec_core"].startswith(site_dir + os.sep)
    assert not [p for p in report["sys_path"] if "site-packages" in p]
    assert str(poison) not in report["sys_path"]
    assert not [p for p in report["sys_path"] if p.endswith(os.sep + "src")]


def test_warm_start_does_not_extract_again(fresh_artifact: Path) -> None:
    first = probe(fresh_artifact)
    site_dir = Path(first["bootstrap"]["site_dir"])
    before = (site_dir.stat().st_ino, (site_dir / MARKER).stat().st_mtime_ns)
    second = probe(fresh_artifact)
    third = run_artifact(fresh_artifact, "--version")
    assert first["bootstrap"]["extracted"] is True
    assert second["bootstrap"]["extracted"] is False
    assert second["bootstrap"]["site_dir"] == str(site_dir)
    assert third.stdout.strip() == PROBE_VERSION
    assert (site_dir.stat().st_ino, (site_dir / MARKER).stat().st_mtime_ns) == before
    assert _extraction_dirs(fresh_artifact.parent) == [site_dir]


def test_concurrent_first_runs_all_succeed_and_one_extraction_wins(fresh_artifact: Path) -> None:
    procs = [
        subprocess.Popen(
            [BASE_PYTHON, "-S", str(fresh_artifact)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        for _ in range(4)
    ]
    results = [(*p.communicate(timeout=RUN_TIMEOUT), p.returncode) for p in procs]
    assert [rc for _, _, rc in results] == [0, 0, 0, 0], [err for _, err, _ in results]
    reports = [json.loads(out) for out, _, _ in results]
    assert len({r["bootstrap"]["site_dir"] for r in reports}) == 1
    assert sum(r["bootstrap"]["extracted"] for r in reports) == 1
    # The losers removed their private extractions: one directory, no temporaries.
    assert len(_extraction_dirs(fresh_artifact.parent)) == 1


def test_extraction_dir_override(fresh_artifact: Path, tmp_path: Path, built: Built) -> None:
    root = tmp_path / "extract-root"
    report = probe(fresh_artifact, env={"HARMONY_FLEET_EXTRACT_DIR": str(root)})
    expected = root / f"harmony-fleet-agent-{built.manifest.payload_digest[:12]}"
    assert report["bootstrap"]["site_dir"] == str(expected)
    assert report["nats"].startswith(str(expected) + os.sep)
    assert _extraction_dirs(fresh_artifact.parent) == []


def test_incomplete_extraction_is_replaced(fresh_artifact: Path) -> None:
    site_dir = Path(probe(fresh_artifact)["bootstrap"]["site_dir"])
    # Simulate a partial directory: files missing, marker gone (a crash before the marker).
    shutil.rmtree(site_dir / "nats")
    (site_dir / MARKER).unlink()
    report = probe(fresh_artifact)
    assert report["bootstrap"]["extracted"] is True
    assert (site_dir / "nats" / "__init__.py").is_file()
    # A marker for another payload is not "complete" either.
    (site_dir / MARKER).write_text("0" * 64 + "\n")
    assert probe(fresh_artifact)["bootstrap"]["extracted"] is True
    assert _extraction_dirs(fresh_artifact.parent) == [site_dir]


def test_stale_temporaries_are_swept(fresh_artifact: Path, built: Built) -> None:
    key = f".harmony-fleet-agent-{built.manifest.payload_digest[:12]}"
    stale = fresh_artifact.parent / f"{key}.tmp-crashed"
    (stale / "msgspec").mkdir(parents=True)
    os.utime(stale, (0, 0))
    recent = fresh_artifact.parent / f"{key}.tmp-inflight"
    recent.mkdir()
    probe(fresh_artifact)
    assert not stale.exists()
    assert recent.exists()  # may belong to a process extracting right now


def test_falls_back_to_the_cache_dir_when_the_artifact_dir_is_not_writable(
    fresh_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process (runs as any user): creating the temporary beside the artifact is refused."""
    real_mkdtemp = tempfile.mkdtemp
    artifact_dir = os.path.realpath(fresh_artifact.parent)

    def refusing_mkdtemp(*args: object, **kwargs: object) -> str:
        if kwargs.get("dir") == artifact_dir:
            raise PermissionError(13, "Permission denied")
        return real_mkdtemp(*args, **kwargs)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(tempfile, "mkdtemp", refusing_mkdtemp)
    monkeypatch.delenv(_bootstrap.ENV_EXTRACT_DIR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    digest = "ab" * 32
    site_dir, extracted = _bootstrap.ensure_extracted(str(fresh_artifact), "agent", digest)
    assert site_dir == str(tmp_path / "cache" / "harmony-fleet" / f"agent-{digest[:12]}")
    assert extracted
    assert (Path(site_dir) / "msgspec" / "__init__.py").is_file()
    assert _extraction_dirs(fresh_artifact.parent) == []


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A directory the unprivileged user can read but not write (pytest's tmp is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="hf-artifact-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _system_python_311() -> str | None:
    """An interpreter ``nobody`` can execute with this build's ABI (pyenv lives under /root)."""
    for candidate in ("/usr/bin/python3.11", "/usr/local/bin/python3.11"):
        if os.path.exists(candidate):
            return candidate
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the artifact as 'nobody'")
def test_read_only_artifact_dir_as_an_unprivileged_user(
    built: Built, world_readable_dir: Path
) -> None:
    """Real process, real permissions: root owns the version dir, 'nobody' runs the agent."""
    python = _system_python_311()
    if python is None or sys.version_info[:2] != (3, 11):
        pytest.skip("no system Python with this build's ABI that 'nobody' can execute")
    version_dir = world_readable_dir / "versions" / PROBE_VERSION
    version_dir.mkdir(parents=True)
    for d in (world_readable_dir / "versions", version_dir):
        d.chmod(0o755)
    artifact = version_dir / built.path.name
    shutil.copy2(built.path, artifact)
    cache = world_readable_dir / "cache"
    cache.mkdir()
    os.chown(cache, 65534, 65534)
    report = probe(
        artifact, python=python, env={"XDG_CACHE_HOME": str(cache), "HOME": "/nonexistent"},
        user=65534, group=65534,
    )  # fmt: skip
    assert report["bootstrap"]["extracted"] is True
    assert report["bootstrap"]["site_dir"].startswith(str(cache / "harmony-fleet") + os.sep)
    assert report["version"] == PROBE_VERSION
    assert _extraction_dirs(version_dir) == []


def test_no_writable_place_exits_4_in_one_line(fresh_artifact: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = run_artifact(fresh_artifact, env={"HARMONY_FLEET_EXTRACT_DIR": str(blocker / "x")})
    assert proc.returncode == _bootstrap.EXIT_EXTRACT_FAILED
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot extract" in lines[0] and PROBE_VERSION in lines[0]


def test_damaged_artifact_exits_4_and_leaves_nothing(fresh_artifact: Path) -> None:
    data = bytearray(fresh_artifact.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    fresh_artifact.write_bytes(bytes(data))
    proc = run_artifact(fresh_artifact)
    assert proc.returncode == _bootstrap.EXIT_EXTRACT_FAILED, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "damaged" in lines[0]
    assert list(fresh_artifact.parent.iterdir()) == [fresh_artifact]


def _other_pythons() -> list[str]:
    """Interpreters of another minor version, for the refusal test (pyenv ships several).

    Older ones matter most: 2.7 and 3.6 cannot even parse the bootstrap, so the refusal must
    come from the gate in ``__main__.py``.
    """
    found = []
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    patterns = [os.path.expanduser("~/.pyenv/versions/*/bin/python"), "/usr/bin/python3.*"]
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            name = os.path.basename(os.path.dirname(os.path.dirname(path)))
            if path.endswith(("-config", here)) or name.startswith(here):
                continue
            if os.access(path, os.X_OK):
                found.append(path)
    return found


def test_incompatible_python_is_refused_before_extracting(fresh_artifact: Path) -> None:
    others = _other_pythons()
    if not others:
        pytest.skip("no interpreter of another minor version on this machine")
    for python in others:
        proc = run_artifact(fresh_artifact, "--version", python=python)
        assert proc.returncode == _bootstrap.EXIT_INCOMPATIBLE, (python, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, (python, proc.stderr)
        assert "cannot run here: built for cpython" in lines[0]
    assert list(fresh_artifact.parent.iterdir()) == [fresh_artifact]


def test_the_real_cli_entry_reports_the_baked_version(tmp_path: Path) -> None:
    """The default entry (``fleet``'s main), once the CLI package is there."""
    pytest.importorskip("harmony_fleet.cli.main")
    manifest = build_artifact("5.1.0", tmp_path)
    proc = run_artifact(tmp_path / manifest.file, "--version")
    assert proc.returncode == 0, proc.stderr
    assert "5.1.0" in proc.stdout
