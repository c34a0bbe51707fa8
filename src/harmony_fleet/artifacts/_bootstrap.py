# ruff: noqa: PLC0415 - imports only the warm path needs are at the top; zipfile, shutil and
# tempfile are imported where the cold path needs them, to keep a warm start cheap.
"""The code that runs first inside an agent artifact: check, extract once, isolate, call the entry.

This file is copied verbatim into every artifact as ``_harmony_bootstrap.py`` (a top-level module
of the zip, imported by the generated ``__main__.py`` through zipimport). So it must use the
standard library only, and it must still *parse* on an older Python (3.7+: no walrus, no ``match``)
so that the version check below can print its one-line refusal instead of a SyntaxError.

Why extract at all: msgspec is a compiled extension, and CPython cannot load a ``.so`` from inside
a zip. Extracting everything once (not only the ``.so``) also makes warm starts plain file imports
with ``__pycache__`` next to the sources, which is faster than zipimport.

Where: ``<artifact dir>/.<name>-<digest12>/`` first, so that deleting ``versions/<v>/`` on the
device removes the extraction too; if that directory cannot be written, ``$XDG_CACHE_HOME`` or
``~/.cache`` under ``harmony-fleet/``. ``HARMONY_FLEET_EXTRACT_DIR`` overrides both (operators
with a read-only root, and tests). ``digest12`` is the start of the payload digest baked at build
time, so two different builds never share a directory and a warm start costs one small file read.

How: into a fresh temporary sibling directory, every file fsync'ed, then a marker file holding the
full digest written last, then ``os.rename`` onto the final name. A crash or power loss mid-way
leaves only a temporary directory (swept later); a directory whose marker is missing or wrong is
never used: it is moved aside and replaced. When several processes race on a first start, each
extracts privately, one rename wins and the others use the winner's directory.

Then the host's site-packages (and ``PYTHONPATH``, user site, editable-install finders) are
removed from the import system, so the artifact runs the exact dependency versions it was built
with whatever else is installed on the device.
"""

from __future__ import annotations

import errno
import os
import sys
import time

MYPY = False
if MYPY:  # typing (with re) costs ~15 ms to import; annotations here are never evaluated
    from typing import Any, NoReturn

EXIT_INCOMPATIBLE = 3
"""The interpreter or machine cannot run this build (its compiled wheels are for another ABI)."""
EXIT_EXTRACT_FAILED = 4
"""No extraction directory could be written, or the artifact file is damaged."""

MARKER = ".harmony-artifact-complete"
PAYLOAD_PREFIX = "site/"
ENV_EXTRACT_DIR = "HARMONY_FLEET_EXTRACT_DIR"
STALE_TMP_SECONDS = 3600.0

#: Filled in by :func:`run` for whoever wants to know (the probe, diagnostics, tests).
STATE: dict[str, Any] = {}


class ExtractError(Exception):
    """Extraction failed everywhere it was tried; the message lists each place and why."""


def incompatibility(info: dict[str, Any]) -> str | None:
    """Why this interpreter cannot run the build described by ``info``, or None if it can."""
    here_py = sys.version_info[:2]
    machine = os.uname().machine
    here = f"{sys.implementation.name} {here_py[0]}.{here_py[1]} on {sys.platform} {machine}"
    if info["compiled"]:
        want = (
            info["implementation"],
            tuple(info["python"]),
            info["sys_platform"],
            info["machine"],
        )
        got = (sys.implementation.name, here_py, sys.platform, os.uname().machine)
        if want != got:
            return "built for {} {}.{} on {} {} (compiled dependencies), this is {}".format(
                info["implementation"],
                info["python"][0],
                info["python"][1],
                info["sys_platform"],
                info["machine"],
                here,
            )
        return None
    if here_py < tuple(info["python"]):
        return "needs Python >= {}.{}, this is {}".format(
            info["python"][0], info["python"][1], here
        )
    return None


def cache_root() -> str | None:
    """``$XDG_CACHE_HOME/harmony-fleet`` or ``~/.cache/harmony-fleet``; None without a home."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return os.path.join(xdg, "harmony-fleet")
    home = os.path.expanduser("~")
    if not os.path.isabs(home):
        return None
    return os.path.join(home, ".cache", "harmony-fleet")


def candidates(artifact: str, name: str, digest: str) -> list[tuple[str, str]]:
    """(parent, directory name) pairs to try in order for this artifact's extraction."""
    key = f"{name}-{digest[:12]}"
    override = os.environ.get(ENV_EXTRACT_DIR, "")
    if override:
        return [(os.path.abspath(override), key)]
    out = [(os.path.dirname(os.path.realpath(artifact)), "." + key)]
    cache = cache_root()
    if cache is not None:
        out.append((cache, key))
    return out


def is_complete(target: str, digest: str) -> bool:
    """True when ``target`` holds a finished extraction of this exact payload."""
    try:
        with open(os.path.join(target, MARKER), encoding="ascii") as fh:
            return fh.read().strip() == digest
    except (OSError, ValueError):
        return False


def ensure_extracted(artifact: str, name: str, digest: str) -> tuple[str, bool]:
    """The directory holding the extracted payload, and whether this call extracted it."""
    problems: list[str] = []
    for parent, dirname in candidates(artifact, name, digest):
        target = os.path.join(parent, dirname)
        if is_complete(target, digest):
            return target, False
        try:
            return _extract(artifact, parent, dirname, digest)
        except OSError as exc:
            problems.append(f"{target}: {exc.strerror or exc}")
    raise ExtractError("cannot extract {}: {}".format(artifact, "; ".join(problems)))


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_filesystem(path: str) -> None:
    """``syncfs(2)`` on the filesystem holding ``path`` (Linux); ``sync()`` elsewhere."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
        try:
            if libc.syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    except (OSError, AttributeError, ImportError):
        pass
    os.sync()


def _unpack(artifact: str, dest: str, digest: str) -> None:
    import shutil
    import zipfile
    import zlib

    try:
        with zipfile.ZipFile(artifact) as zf:
            for info in zf.infolist():
                if not info.filename.startswith(PAYLOAD_PREFIX) or info.is_dir():
                    continue
                parts = info.filename[len(PAYLOAD_PREFIX) :].split("/")
                if any(p in ("", ".", "..") for p in parts):
                    raise ExtractError(f"unsafe entry {info.filename!r} in {artifact}")
                path = os.path.join(dest, *parts)
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                with zf.open(info) as src, open(path, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ExtractError(f"{artifact} is damaged: {exc}") from exc
    # Data on disk before the marker says "complete": one sync of the filesystem for all
    # files, because an fsync per file costs a journal commit each (seconds for ~800 files on
    # an SD card).
    _sync_filesystem(dest)
    # The marker goes last: its presence with the right digest is what "complete" means.
    with open(os.path.join(dest, MARKER), "w", encoding="ascii") as fh:
        fh.write(digest + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(dest, 0o755)  # noqa: S103 - mkdtemp made it 0700; the agent may run as another user later
    _fsync_dir(dest)


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _extract(artifact: str, parent: str, dirname: str, digest: str) -> tuple[str, bool]:
    import tempfile

    os.makedirs(parent, exist_ok=True)
    target = os.path.join(parent, dirname)
    tmp = tempfile.mkdtemp(prefix=dirname + ".tmp-", dir=parent)
    try:
        _unpack(artifact, tmp, digest)
        for _attempt in range(5):
            try:
                os.rename(tmp, target)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
            else:
                _fsync_dir(parent)
                _sweep(parent, dirname)
                return target, True
            if is_complete(target, digest):  # another process won the race: use theirs
                _remove_tree(tmp)
                return target, False
            # A directory without a valid marker: a damaged or foreign leftover. Move it aside
            # (atomically, so a racing process never sees half of it deleted) and retry.
            aside = f"{target}.broken-{os.getpid()}-{time.monotonic_ns()}"
            try:
                os.rename(target, aside)
            except FileNotFoundError:
                continue
            _remove_tree(aside)
        raise OSError(errno.EBUSY, f"{target} keeps changing under us")
    except BaseException:
        _remove_tree(tmp)
        raise


def _sweep(parent: str, dirname: str) -> None:
    """Remove temporary and moved-aside directories that crashed extractions left behind."""
    now = time.time()
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for entry in names:
        if not entry.startswith(dirname + "."):
            continue
        path = os.path.join(parent, entry)
        try:
            old = now - os.stat(path).st_mtime > STALE_TMP_SECONDS
        except OSError:
            continue
        if old or ".broken-" in entry:
            _remove_tree(path)


def _is_stdlib(path: str, stdlib: str) -> bool:
    if not path:
        return False
    parts = path.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    stdlib_zip = os.path.join(
        os.path.dirname(stdlib), "python{}{}.zip".format(*sys.version_info[:2])
    )
    return path in (stdlib, stdlib_zip) or path.startswith(stdlib + os.sep)


def isolate(site_dir: str, artifact: str) -> None:
    """Make ``site_dir`` plus the standard library the only places imports come from.

    Drops site-packages, ``PYTHONPATH``, the user site and the artifact zip itself from
    ``sys.path``, import finders that ``.pth`` files installed (editable installs, setuptools'
    distutils hack), and modules already imported from any of those places.
    """
    import importlib

    stdlib = os.path.dirname(os.__file__)
    kept = [p for p in sys.path if _is_stdlib(p, stdlib)]
    sys.path[:] = [site_dir, *kept]
    standard = ("_frozen_importlib", "_frozen_importlib_external", "zipimport")
    sys.meta_path[:] = [f for f in sys.meta_path if getattr(f, "__module__", "") in standard]
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()
    allowed = (site_dir + os.sep, os.path.realpath(artifact) + os.sep, artifact + os.sep)
    for modname, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None)
        if not isinstance(origin, str) or modname == "__main__":
            continue
        if origin.startswith(allowed) or _is_stdlib(os.path.dirname(origin), stdlib):
            continue
        del sys.modules[modname]


def resolve(entry: str) -> Any:
    """Import ``module:attr.path`` and return the attribute."""
    import importlib

    module_name, _, attr = entry.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attr.split(".") if attr else ():
        target = getattr(target, part)
    return target


def _die(code: int, message: str) -> NoReturn:
    sys.stderr.write(message.replace("\n", " ") + "\n")
    sys.stderr.flush()
    raise SystemExit(code)


def artifact_path() -> str:
    """The artifact file this module was imported from (or ``sys.argv[0]`` as a fallback)."""
    loader = globals().get("__loader__")
    archive = getattr(loader, "archive", None)
    return os.path.abspath(str(archive) if archive else sys.argv[0])


def run(info: dict[str, Any]) -> NoReturn:
    """Everything ``__main__.py`` does: check, extract, isolate, call the entry, exit with it."""
    label = "{} {}".format(info["name"], info["version"])
    problem = incompatibility(info)
    if problem is not None:
        _die(EXIT_INCOMPATIBLE, f"{label}: cannot run here: {problem}")
    artifact = artifact_path()
    try:
        site_dir, extracted = ensure_extracted(artifact, info["name"], info["digest"])
    except ExtractError as exc:
        _die(EXIT_EXTRACT_FAILED, f"{label}: {exc}")
    STATE.update(artifact=artifact, site_dir=site_dir, extracted=extracted, info=info)
    isolate(site_dir, artifact)
    main = resolve(info["entry"])
    result = main()
    raise SystemExit(result)
