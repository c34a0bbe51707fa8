"""A real systemd to test against: a debootstrap rootfs (cached), booted with systemd-nspawn.

Follows ``/work/shared/guide/testing.md``: ``--register=no --keep-unit`` (the host runs no
systemd), the project, the venv and the Python prefix bound at the same paths (so artifacts run
with the same interpreter and unit paths resolve inside), commands entered with
``nsenter -t PID1 -a sh -c 'cd … && …'``, stopped with SIGTERM to nspawn.

The rootfs is built once per package list and cached: built into a temporary sibling, then
renamed, so an interrupted build never leaves something that looks complete. Each session boots
a *copy* of it, because tests install units and files, and a container restart must keep them.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SUITE = "bookworm"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "procps")
CACHE = Path(os.environ.get("FLEET_ROOTFS_CACHE", "/var/cache/harmony-fleet-test"))
COMPLETE = ".harmony-rootfs-complete"
STALE_BUILD_S = 3600.0
#: What commands inside get: not this process's environment (its SSL_CERT_FILE, VIRTUAL_ENV…
#: name files that do not exist in the container), but what a root shell there would have.
CLEAN_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    # A source tree chosen with PYTHONPATH (a clean export of a commit) is used inside too.
    **({"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}),
}


def rootfs_key() -> str:
    text = f"{SUITE} minbase {','.join(PACKAGES)} {os.environ.get('FLEET_DEBOOTSTRAP_MIRROR', '')}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def remove_tree(path: Path) -> None:
    """Delete a rootfs-like tree without ever crossing into a mounted filesystem.

    An interrupted debootstrap can leave /proc, /sys or a bind of /dev mounted inside its
    target; those are unmounted first (deepest first) and ``--one-file-system`` keeps ``rm``
    out of anything that is still mounted.
    """
    if not path.exists():
        return
    real = str(path.resolve())
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == real or point.startswith(real + "/"):
            mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    subprocess.run(["rm", "-rf", "--one-file-system", real], check=False)


def build_rootfs(log: Path) -> tuple[Path, float]:
    """The cached rootfs for :data:`PACKAGES` (built if absent); and seconds spent building."""
    final = CACHE / f"rootfs-{SUITE}-{rootfs_key()}"
    if (final / COMPLETE).is_file():
        return final, 0.0
    CACHE.mkdir(parents=True, exist_ok=True)
    for stale in CACHE.glob(".build-*"):
        if time.time() - stale.stat().st_mtime > STALE_BUILD_S:
            remove_tree(stale)
    if final.exists():  # no marker: an older, broken attempt
        remove_tree(final)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=CACHE))
    target = work / "rootfs"
    started = time.monotonic()
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(target),
    ]
    if mirror := os.environ.get("FLEET_DEBOOTSTRAP_MIRROR"):
        cmd.append(mirror)
    try:
        with open(log, "ab") as out:
            done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"debootstrap failed ({done.returncode}); see {log}")
        (target / COMPLETE).write_text(" ".join(cmd) + "\n")
        try:
            os.rename(target, final)
        except OSError:
            if not (final / COMPLETE).is_file():  # lost the race to a broken one: retry later
                raise
    finally:
        remove_tree(work)
    return final, time.monotonic() - started


def python_binds() -> list[tuple[str, bool]]:
    """The project (rw), the venv and the Python prefix (ro), at the same paths as here."""
    project = Path(__file__).resolve().parents[2]
    binds = [(str(project), False), (sys.prefix, True)]
    base = sys.base_prefix
    if base not in ("/usr", "/"):  # Debian's own python3 is in the rootfs already
        binds.append((base, True))
    return binds


@dataclass
class Machine:
    """One container: boot, run commands inside, shut down, boot again (same disk)."""

    rootfs: Path
    log: Path
    binds: list[tuple[str, bool]] = field(default_factory=python_binds)
    extra_binds: list[str] = field(default_factory=list)
    """``--bind-ro=`` values (``HOST:CONTAINER``)."""
    name: str = field(default_factory=lambda: f"fleettest-{os.getpid()}")
    proc: subprocess.Popen[bytes] | None = None
    pid1: int = 0
    boots: int = 0

    def boot(self, timeout: float = 90.0) -> float:
        """Start the container and wait until systemd says running or degraded; seconds taken."""
        started = time.monotonic()
        cmd = ["systemd-nspawn", "--boot", "-D", str(self.rootfs), "-M", self.name]
        cmd += ["--register=no", "--keep-unit", "--console=pipe"]
        for path, ro in self.binds:
            cmd.append(f"--bind-ro={path}" if ro else f"--bind={path}")
        cmd += [f"--bind-ro={b}" for b in self.extra_binds]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        deadline = started + timeout
        self.pid1 = self._wait_for_pid1(deadline)
        state = ""
        while time.monotonic() < deadline:
            state = self.sh("systemctl is-system-running", check=False, cwd="/").stdout.strip()
            if state in ("running", "degraded"):
                self.boots += 1
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(f"container did not finish booting: {state!r}; see {self.log}")

    def _wait_for_pid1(self, deadline: float) -> int:
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited with {self.proc.returncode}")
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    status = (entry / "status").read_text()
                except OSError:
                    continue
                fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
                if fields.get("PPid") == str(self.proc.pid) and fields.get("Name") == "systemd":
                    return int(entry.name)
            time.sleep(0.05)
        raise AssertionError("the container's systemd did not appear")

    def shutdown(self, timeout: float = 90.0) -> None:
        """SIGTERM to nspawn (a clean halt of the container) and wait for it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.pid1 = 0

    def sh(
        self, script: str, *, check: bool = True, timeout: float = 120.0, cwd: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell snippet inside (``nsenter --wd`` fails: ``cd`` in the snippet instead)."""
        assert self.pid1, "container not booted"
        where = cwd or self.binds[0][0]
        cmd = [
            "nsenter",
            "-t",
            str(self.pid1),
            "-a",
            "sh",
            "-c",
            f"cd {shlex.quote(where)} && {script}",
        ]
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, env=CLEAN_ENV
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"in container: {script!r} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
            )
        return done

    def run(
        self, *argv: str, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        return self.sh(shlex.join(argv), check=check, timeout=timeout)
