"""Run inside the container: hostile arguments through systemd, read back from the process.

Both ways our code hands a command to systemd are tried for real: ``systemd-run`` (through
:class:`Systemd`, as the executor does for candidates) and a unit file's ``ExecStart=`` (rendered
with :func:`exec_line`, as the installer does). The started process prints its ``argv`` as JSON;
this script prints ``{"run": [...], "unit": [...]}`` from the journal.
"""

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from harmony_fleet.adapters.systemd.systemctl import Systemd
from harmony_fleet.adapters.systemd.units import exec_line

PRINT_ARGV = "import json, sys; print('ARGV ' + json.dumps(sys.argv[1:]), flush=True)"


def read_back(unit: str) -> list[str]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["journalctl", "-u", unit, "-o", "cat", "--no-pager"], capture_output=True, text=True
        ).stdout
        for line in out.splitlines():
            if line.startswith("ARGV "):
                return list(json.loads(line[5:]))
        time.sleep(0.1)
    raise SystemExit(f"no ARGV line from {unit}")


async def main(hostile: list[str]) -> None:
    sd = Systemd()
    command = [sys.executable, "-c", PRINT_ARGV, *hostile]
    await sd.run_transient(
        "argv-probe-run.service", command, description="argv probe", properties={"Type": "exec"}
    )
    unit = Path("/etc/systemd/system/argv-probe-unit.service")
    unit.write_text(f"[Service]\nType=exec\nExecStart={exec_line(command)}\n")
    await sd.daemon_reload()
    await sd.systemctl("start", "argv-probe-unit.service")
    result = {
        "run": read_back("argv-probe-run.service"),
        "unit": read_back("argv-probe-unit.service"),
    }
    unit.unlink()
    await sd.daemon_reload()
    print(json.dumps(result))


asyncio.run(main(json.loads(sys.argv[1])))
