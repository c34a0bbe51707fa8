"""``fleet operator --kubernetes`` end to end: the kmock API emulator, real NATS, a real
operator process, real agent processes built as real artifacts.

What these prove and what they cannot (the emulator is not an API server): see
docs/kubernetes.md, "What CI proves".
"""

from __future__ import annotations

import asyncio

from harmony_fleet.contracts import AgentUpgradePhase, Role
from tests.helpers import eventually
from tests.kubernetes.conftest import INTERVAL, KubeFleet
from tests.kubernetes.support import (
    condition,
    create_device,
    patch_spec,
    phase,
    publish,
    runs,
    status_of,
)

P = AgentUpgradePhase
DEV = "edge-k8s"
#: A short post-commit watch, so that Succeeded comes seconds after the commit, not 10 minutes.
SPEC_V2 = {"agentVersion": "2.0.0", "timeouts": {"watchSeconds": 3, "holdSeconds": 60}}
ORDER = [
    P.REQUESTED,
    P.STAGING,
    P.VERIFYING,
    P.CUTOVER_READY,
    P.HOLDING,
    P.COMMITTED,
    P.SUCCEEDED,
]


async def started(fleet: KubeFleet, name: str = DEV, version: str = "1.0.0") -> None:
    await fleet.add_device(name, version)  # pins the fleet's repository's root

    def beats() -> bool:
        seen = fleet.monitor.devices.get(name)
        return bool(seen and seen.last and seen.last.agent_version == version)

    await eventually(beats, timeout=60, what=f"{name} heartbeating on {version}")


async def reflected(fleet: KubeFleet, check: object, what: str, timeout: float = 60) -> None:
    try:
        await eventually(check, timeout=timeout, interval=0.05, what=what)  # type: ignore[arg-type]
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- operator log ---\n{fleet.operator_log()}") from None


def phases_seen(fleet: KubeFleet, name: str) -> list[str]:
    """Distinct upgrade phases in the Device's stored history, in the order they appeared."""
    out: list[str] = []
    for version in fleet.kube.history(name):
        p = phase(version)
        if p is not None and (not out or out[-1] != p):
            out.append(p)
    return out


async def test_a_device_on_nats_appears_as_a_resource_and_goes_offline(fleet: KubeFleet) -> None:
    await started(fleet)
    kube = fleet.kube

    def appeared() -> bool:
        d = kube.device(DEV)
        online = condition(d, "Online")
        return bool(
            d
            and status_of(d).get("currentVersion") == "1.0.0"
            and online
            and online["status"] == "True"
        )

    await reflected(fleet, appeared, "Device with currentVersion 1.0.0 and Online=True")
    device = kube.device(DEV)
    assert device is not None
    assert device["spec"] == {}, "the operator never writes spec"
    assert "upgrade" not in device["status"]
    progressing = condition(device, "UpgradeProgressing")
    assert progressing is not None and progressing["status"] == "False"
    # kopf's create handler saw the empty spec and said so.
    await reflected(
        fleet,
        lambda: (
            (condition(kube.device(DEV), "SpecValid") or {}).get("reason") == "NoDesiredVersion"
        ),
        "SpecValid/NoDesiredVersion",
    )
    # Every status write was a merge patch on the status subresource (a real API server
    # rejects the json-patch content type kubernetes_asyncio would pick by itself).
    patches = [q for q in kube.emulator["patch"] if q.url.path.endswith(f"/{DEV}/status")]
    assert patches
    assert {q.headers.get("Content-Type") for q in patches} == {"application/merge-patch+json"}

    await fleet.devices[DEV].stop()

    def offline() -> bool:
        online = condition(kube.device(DEV), "Online")
        return bool(online and online["status"] == "False")

    await reflected(fleet, offline, "Online=False after the agent stopped", timeout=30)
    online = condition(kube.device(DEV), "Online")
    assert online is not None and online["reason"] == "HeartbeatsMissing"


async def test_status_follows_an_upgrade_through_its_phases(fleet: KubeFleet) -> None:
    """An upgrade asked for outside Kubernetes (``fleet upgrade``) is reflected all the same."""
    await started(fleet)
    await publish(fleet, "2.0.0")  # signed releases: the device installs only a signed target
    marker = await fleet.request_upgrade(DEV, "2.0.0")
    kube = fleet.kube

    def succeeded() -> bool:
        return runs(kube.device(DEV), "2.0.0")

    await reflected(fleet, succeeded, "phase Succeeded and currentVersion 2.0.0", timeout=90)
    device = kube.device(DEV)
    assert device is not None
    upgrade = device["status"]["upgrade"]
    assert upgrade["id"] == marker.upgrade_id
    assert upgrade["targetVersion"] == "2.0.0"
    assert upgrade["startedAt"] <= upgrade["updatedAt"]
    seen = phases_seen(fleet, DEV)
    # Phases appear in protocol order, never backwards, and not only the end: the post-commit
    # watch keeps Committed up for seconds; how many of the pre-commit phases (each lasting
    # milliseconds to a second here) get their own write depends on the machine's pace, as the
    # mirror writes the newest status it has (CI once showed ['Committed', 'Succeeded']).
    assert seen == sorted(seen, key=lambda p: ORDER.index(P(p))), seen
    assert seen[-1] == "Succeeded" and len(seen) >= 2, seen
    progressing = [
        (condition(v, "UpgradeProgressing") or {}).get("status") for v in kube.history(DEV)
    ]
    assert "True" in progressing and progressing[-1] == "False"
    assert (condition(device, "RolledBack") or {}).get("status") == "False"


async def test_a_spec_change_writes_the_marker_and_the_device_upgrades(fleet: KubeFleet) -> None:
    await started(fleet)
    await publish(fleet, "2.0.0")
    kube = fleet.kube
    await reflected(fleet, lambda: kube.device(DEV) is not None, "Device created")
    await patch_spec(kube, DEV, SPEC_V2)

    def runs_v2() -> bool:
        return runs(kube.device(DEV), "2.0.0")

    await reflected(fleet, runs_v2, "the device upgraded to 2.0.0 from its spec", timeout=90)

    async def agent_says_succeeded() -> bool:
        s = await fleet.status(DEV)
        return s is not None and s.phase is P.SUCCEEDED and s.to_version == "2.0.0"

    await eventually(agent_says_succeeded, timeout=30, what="the new main writes Succeeded")
    record = await fleet.record(DEV)
    assert record is not None and record.current_version == "2.0.0"
    assert fleet.devices[DEV].layout.current_version() == "2.0.0"
    await eventually(lambda: len(fleet.agent_processes(DEV)) == 1, timeout=30, what="one agent")
    last = fleet.monitor.devices[DEV].last
    assert last is not None and last.agent_version == "2.0.0" and last.role is Role.MAIN
    spec_valid = condition(kube.device(DEV), "SpecValid")
    assert spec_valid is not None and spec_valid["status"] == "True", spec_valid


async def test_an_operator_restart_mid_upgrade_neither_loses_nor_repeats_it(
    fleet: KubeFleet,
) -> None:
    await started(fleet)
    await publish(fleet, "2.0.0")
    kube = fleet.kube
    await reflected(fleet, lambda: kube.device(DEV) is not None, "Device created")
    await patch_spec(kube, DEV, SPEC_V2)

    async def under_way() -> object:
        s = await fleet.status(DEV)
        return s if s is not None and s.phase in (P.STAGING, P.VERIFYING, P.CUTOVER_READY) else None

    first = await eventually(under_way, timeout=60, interval=0.02, what="the upgrade under way")
    await fleet.stop_operator(kill=True)  # SIGKILL: no clean shutdown of kopf or the reflector
    # While the operator is away the agent cannot commit (no stop comes): the old one runs.
    await asyncio.sleep(3 * INTERVAL)
    assert fleet.devices[DEV].layout.current_version() == "1.0.0"
    await fleet.start_operator()

    def runs_v2() -> bool:
        return runs(kube.device(DEV), "2.0.0")

    await reflected(fleet, runs_v2, "the upgrade finished after the restart", timeout=120)
    status = await fleet.status(DEV)
    assert status is not None and status.upgrade_id == first.upgrade_id, (
        "the restarted operator wrote a second marker for the same target"
    )
    assert fleet.devices[DEV].layout.current_version() == "2.0.0"
    ids = {(status_of(v).get("upgrade") or {}).get("id") for v in kube.history(DEV)}
    assert ids - {None} == {first.upgrade_id}
    await eventually(lambda: len(fleet.agent_processes(DEV)) == 1, timeout=30, what="one agent")


async def test_an_invalid_spec_gives_a_condition_not_a_crash(fleet: KubeFleet) -> None:
    await started(fleet)
    kube = fleet.kube
    await reflected(fleet, lambda: kube.device(DEV) is not None, "Device created")
    await patch_spec(kube, DEV, {"agentVersion": "9.9.9"})  # never published
    await create_device(kube, "typo-dev", {"agentVersion": "2..0 beta"})

    def said(name: str, reason: str) -> bool:
        cond = condition(kube.device(name), "SpecValid")
        return bool(cond and cond["status"] == "False" and cond["reason"] == reason)

    await reflected(fleet, lambda: said(DEV, "UnknownRelease"), "SpecValid/UnknownRelease")
    await reflected(fleet, lambda: said("typo-dev", "InvalidVersion"), "SpecValid/InvalidVersion")
    unknown = condition(kube.device(DEV), "SpecValid")
    assert (
        unknown is not None
        and "fleet release publish ARTIFACT --version 9.9.9" in unknown["message"]
    )
    invalid = condition(kube.device("typo-dev"), "SpecValid")
    assert invalid is not None and "'2..0 beta' is not a valid version" in invalid["message"]
    # No marker was written, the operator still runs and still reflects.
    assert await fleet.status(DEV) is None
    assert fleet.operator_proc is not None and fleet.operator_proc.poll() is None
    online = condition(kube.device(DEV), "Online")
    assert online is not None and online["status"] == "True"
    assert status_of(kube.device(DEV)).get("currentVersion") == "1.0.0"
