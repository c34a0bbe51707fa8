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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from harmony_fleet.adapters.nats.connection import connect
from harmony_fleet.agent.config import AgentConfig
from harmony_fleet.agent.faults import Faults
from harmony_fleet.contracts.upgrade import SELF_TEST_UNAVAILABLE_EXIT
from harmony_fleet.errors import FleetError, PermanentError

#: How often the NATS check tries again within its timeout.
NATS_RETRY_S = 0.5
#: How long one JetStream request of the NATS check waits for its answer.
JS_REQUEST_S = 2.0

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


async def check_nats(
    config: AgentConfig,
    timeout_s: float,
    *,
    probe: Callable[[], Awaitable[str]] | None = None,
    retry_s: float = NATS_RETRY_S,
) -> CheckResult:
    """NATS answers, JetStream included, within ``timeout_s``: tried again every ``retry_s``
    until then, since a control plane electing a JetStream leader (5-7 s measured on a 3-node
    cluster) answers a moment later; a permanent error (credentials refused) fails at once."""

    async def connect_and_ask() -> str:
        nc = await connect(config.nats.with_name(f"selftest:{config.device_id}"))
        try:
            # A short request timeout: an unanswered one is tried again within timeout_s.
            info = await nc.jetstream(timeout=JS_REQUEST_S).account_info()
            return (
                f"connected to {nc.connected_url.netloc if nc.connected_url else '?'}, "
                f"JetStream streams={info.streams}"
            )
        finally:
            await nc.close()

    ask = probe or connect_and_ask
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last = "no answer"
    while (left := deadline - loop.time()) > 0:
        scope = asyncio.timeout(left)
        try:
            async with scope:
                return CheckResult("nats", True, await ask())
        except TimeoutError as exc:
            if scope.expired():
                break
            last = f"{type(exc).__name__}: {exc}"  # a request's own timeout: try again
        except PermanentError as exc:
            return CheckResult("nats", False, str(exc))
        except FleetError as exc:
            last = str(exc)
        except Exception as exc:  # nats-py's JetStream errors, permission errors
            last = f"{type(exc).__name__}: {exc}"
        await asyncio.sleep(min(retry_s, max(0.0, deadline - loop.time())))  # a retry's pace
    return CheckResult("nats", False, f"no answer from NATS within {timeout_s} s (last: {last})")


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
