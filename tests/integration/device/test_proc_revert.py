"""A revert on a process-mode device leaves ``<prefix>`` byte-identical to what the upgrade found
(ADR-022, invariant 6): files, modes, links, and the artifact's extraction directory included."""

from __future__ import annotations

from collections.abc import Callable

from proc_support import NEW, OLD, Built, SignedMirror, alive, marker, tree

from conftest import ProcDevice
from harmony_fleet.adapters.device import AgentLayout
from harmony_fleet.contracts.ids import UpgradeId, Version


async def test_rollback_of_a_running_candidate_restores_the_tree(
    make_device: Callable[..., ProcDevice],
    layout: AgentLayout,
    mirror: SignedMirror,
    artifact: Callable[[str], Built],
) -> None:
    # No shared extraction here: the artifact unpacks itself inside versions/2.0.0/, which the
    # revert must remove along with everything else the upgrade created.
    device = make_device(shared_extraction=False)
    new = artifact(NEW)
    mirror.sign(NEW, new.body)
    m = marker(new, uid="u-back")
    before = tree(layout.prefix)

    await device.files.stage(m, lambda p: None)
    assert (await device.runner.self_test(m, timeout_s=60)).ok
    handle = await device.runner.start_candidate(m)
    assert any(
        p.name.startswith(".harmony-fleet-agent-") for p in layout.version_dir(NEW).iterdir()
    )

    await device.revert(upgrade_id=UpgradeId("u-back"), previous=Version(OLD), target=Version(NEW))

    assert not alive(int(handle.ref))
    assert tree(layout.prefix) == before
    assert device.runner.candidate_log("u-back").exists(), (
        "the candidate's log survives the rollback"
    )


async def test_a_half_done_swap_is_reverted_by_a_restarted_agent(
    make_device: Callable[..., ProcDevice],
    layout: AgentLayout,
    mirror: SignedMirror,
    artifact: Callable[[str], Built],
) -> None:
    new = artifact(NEW)
    mirror.sign(NEW, new.body)
    m = marker(new, uid="u-half")
    before = tree(layout.prefix)
    await make_device().files.stage(m, lambda p: None)
    layout.swap_current(NEW)  # current moved, then the agent died before the commit completed
    assert layout.current_version() == NEW

    await make_device().revert(
        upgrade_id=UpgradeId("u-half"), previous=Version(OLD), target=Version(NEW)
    )

    assert layout.current_version() == OLD
    assert tree(layout.prefix) == before


async def test_a_commit_makes_the_version_the_devices_and_a_version_found_installed_is_kept(
    device: ProcDevice,
    layout: AgentLayout,
    mirror: SignedMirror,
    artifact: Callable[[str], Built],
) -> None:
    new = artifact(NEW)
    mirror.sign(NEW, new.body)
    m = marker(new, uid="u-commit")
    await device.files.stage(m, lambda p: None)

    await device.files.swap_current(Version(NEW))
    assert await device.files.current_version() == NEW
    await device.files.swap_current(Version(NEW))  # idempotent
    await device.files.swap_current(Version(OLD))  # a later upgrade back to the old version ...
    before = tree(layout.prefix)

    # ... which finds 2.0.0 installed: reused (nothing fetched) and kept by the revert.
    requests = mirror.target_requests()
    again = marker(new, uid="u-again")
    await device.files.stage(again, lambda p: None)
    assert mirror.target_requests() == requests
    await device.revert(upgrade_id=UpgradeId("u-again"), previous=Version(OLD), target=Version(NEW))
    await device.files.cleanup_staging(Version(NEW))

    assert layout.has_version(NEW)
    assert tree(layout.prefix) == before
