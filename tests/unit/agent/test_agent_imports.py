"""An agent that is not downloading does not carry the HTTP client (nor what it drags in).

httpx imports click and rich; the agent's composition (``agent.build``) once pulled it in at
start through the device's files, adding about 0.2 s to every start of an artifact (measured by
``bench/upgrade.py``'s ``artifact_warm_start_s``) and the modules' memory to every idle agent.
The downloader is imported when a download starts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = (
    *("httpx", "click", "rich", "cryptography", "kopf", "kubernetes_asyncio"),
    *("tuf", "securesystemslib", "urllib3"),
)


def test_building_an_agent_imports_no_heavy_module() -> None:
    code = (
        "import json, sys\n"
        "import harmony_fleet.agent.build\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_an_agent_with_a_pinned_trust_root_loads_tuf_only_when_an_upgrade_starts(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root.json"
    root.write_text("{}")
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from harmony_fleet.adapters.device.launch import LaunchSpec\n"
        "from harmony_fleet.agent.build import build_agent\n"
        "from harmony_fleet.agent.config import AgentConfig\n"
        "from harmony_fleet.agent.faults import parse_faults\n"
        "from harmony_fleet.contracts import device_id\n"
        f"tmp = Path({str(tmp_path)!r})\n"
        "config = AgentConfig(device_id=device_id('edge-1'), state_dir=tmp / 'state',\n"
        "    install_prefix=tmp / 'opt', trust_root=tmp / 'root.json')\n"
        "launch = LaunchSpec(device_id='edge-1', state_dir=tmp / 'state')\n"
        "build_agent(config, faults=parse_faults(''), launch=launch)\n"
        "assert (tmp / 'state' / 'tuf' / 'root.json').is_file()\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_loading_the_cli_imports_no_tuf_nor_cryptography() -> None:
    """An artifact loads every command to run ``fleet agent run``: ``fleet release`` imports
    python-tuf (and cryptography, not in the artifact) only when one of its commands runs."""
    code = (
        "import json, sys\n"
        "import harmony_fleet.cli.main\n"
        "print(json.dumps([m for m in ('tuf', 'securesystemslib', 'cryptography') "
        "if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
