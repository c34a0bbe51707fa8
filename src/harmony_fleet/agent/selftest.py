"""``fleet agent run --self-test``: can this artifact really run here?

The old agent runs the new artifact with ``--self-test`` before it starts it as a candidate. Exit 0
only if every check passes: the code imports (compiled dependencies included), the configuration
parses (the CLI has built an :class:`AgentConfig` before we get here), the state dir is writable,
and NATS answers with our credentials, JetStream included, within ``timeout_s``. Each check prints
one line, so the old agent can put the reason of a failure into the upgrade status.

When the NATS check is the only one that failed, the exit code is
:data:`~harmony_fleet.contracts.upgrade.SELF_TEST_UNAVAILABLE_EXIT` rather than 1: NATS being
away says nothing about this artifact, and the old agent must not put a good version on the
device's skip list for an outage (ADR-022).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from harmony_fleet.adapters.nats.connection import connect
from harmony_fleet.agent.config import AgentConfig
from harmony_fleet.agent.faults import Faults
from harmony_fleet.contracts.upgrade import SELF_TEST_UNAVAILABLE_EXIT
from harmony_fleet.errors import FleetError

#: Modules whose import proves the artifact is whole (msgspec is compiled).
REQUIRED_MODULES = ("msgspec", "nats", "httpx", "harmony_fleet.agent.runtime")


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def check_imports() -> CheckResult:
    for name in REQUIRED_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:
            return CheckResult("imports", False, f"cannot import {name}: {exc}")
    return CheckResult("imports", True, ", ".join(REQUIRED_MODULES))


def check_state_dir(config: AgentConfig) -> CheckResult:
    try:
        config.state_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=config.state_dir, prefix=".selftest-") as f:
            f.write(b"ok")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        return CheckResult("state_dir", False, f"{config.state_dir} is not writable: {exc}")
    return CheckResult("state_dir", True, str(config.state_dir))


async def check_nats(config: AgentConfig, timeout_s: float) -> CheckResult:
    async def probe() -> str:
        nc = await connect(config.nats.with_name(f"selftest:{config.device_id}"))
        try:
            info = await nc.jetstream().account_info()
            return (
                f"connected to {nc.connected_url.netloc if nc.connected_url else '?'}, "
                f"JetStream streams={info.streams}"
            )
        finally:
            await nc.close()

    try:
        detail = await asyncio.wait_for(probe(), timeout_s)
    except TimeoutError:
        return CheckResult("nats", False, f"no answer from NATS within {timeout_s} s")
    except FleetError as exc:
        return CheckResult("nats", False, str(exc))
    except Exception as exc:  # nats-py's JetStream errors, permission errors
        return CheckResult("nats", False, f"{type(exc).__name__}: {exc}")
    return CheckResult("nats", True, detail)


async def self_test(
    config: AgentConfig,
    *,
    faults: Faults,
    timeout_s: float = 10.0,
    emit: Callable[[str], None] = print,
) -> int:
    """Run every check, print one line each, return the process exit code (0 = all passed)."""
    if faults.self_test_hang:
        emit("self-test: build fault: hanging")
        await asyncio.Event().wait()
    results = [check_imports(), check_state_dir(config), await check_nats(config, timeout_s)]
    if faults.self_test_fail:
        results.append(CheckResult("build", False, "build fault: self-test-fail"))
    for r in results:
        emit(f"self-test {r.name}: {'ok' if r.ok else 'FAILED'}: {r.detail}")
    failed = {r.name for r in results if not r.ok}
    if not failed:
        return 0
    return SELF_TEST_UNAVAILABLE_EXIT if failed == {"nats"} else 1
