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

HEAVY = ("httpx", "click", "rich", "cryptography", "kopf", "kubernetes_asyncio")


def test_building_an_agent_imports_no_heavy_module() -> None:
    code = (
        "import json, sys\n"
        "import harmony_fleet.agent.build\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
