"""Random fleets, behaviours, presence flips and levers against the engine's invariants, checked
after every plan:

* never more than max-in-flight devices in progress (forward and undo together);
* never a device started on the new version after a halt (undo markers aside);
* never a device started that fails a pre-flight gate (disk, the version's skip list);
* every device of the rollout is in exactly one of succeeded / rolled back / failed / skipped /
  pending / in progress, and a finished rollout (Done) has none pending or in progress;
* a replayed plan (same inputs) is the same plan.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harmony_fleet.contracts.rollout import DeviceState, RolloutPhase, Share
from harmony_fleet.core.rollout import plan
from harmony_fleet.core.rollout.fleet import skipped_by

from .world import NEW, SimDevice, World, rollout

S = DeviceState
P = RolloutPhase
BEHAVIOURS = st.sampled_from(["ok", "ok", "ok", "fail", "rollback", "lost"])
# Mostly time passing: levers now and then, so that rollouts get far enough to halt.
EVENTS = st.sampled_from(
    ["tick"] * 16 + ["flip", "flip", "pause", "resume", "abort", "undo", "late"]
)


@st.composite
def fleets(draw: st.DrawFn) -> list[SimDevice]:
    n = draw(st.integers(min_value=1, max_value=25))
    devices = []
    for i in range(n):
        devices.append(
            SimDevice(
                device_id=f"d{i:02d}",
                online=draw(st.booleans()) or draw(st.booleans()),
                labels={
                    "arch": draw(st.sampled_from(["arm64", "amd64"])),
                    "link_type": draw(st.sampled_from(["lte", "wifi", "eth"])),
                    "free_disk_bytes": draw(st.sampled_from(["100", "1000", "1000000"])),
                },
                behaviour=draw(BEHAVIOURS),
            )
        )
    return devices


SHARES = st.one_of(
    st.builds(Share, count=st.integers(min_value=0, max_value=6)),
    st.builds(Share, percent=st.floats(min_value=0.0, max_value=60.0)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    devices=fleets(),
    canary=SHARES,
    width=SHARES,
    rate=st.floats(min_value=0.0, max_value=50.0),
    spread=st.sampled_from([0.0, 3.0, 20.0]),
    events=st.lists(EVENTS, min_size=30, max_size=80),
    flips=st.lists(st.integers(min_value=0, max_value=24), min_size=80, max_size=80),
    skip=st.sampled_from([(), ("link_type=lte",), ("d01", "arch=amd64")]),
)
def test_rollout_invariants(
    devices: list[SimDevice],
    canary: Share,
    width: Share,
    rate: float,
    spread: float,
    events: list[str],
    flips: list[int],
    skip: tuple[str, ...],
) -> None:
    spec = rollout(
        canary=canary,
        max_in_flight=width,
        halt_failure_rate=rate,
        spread_s=spread,
        deadline=1_790_000_000.0 + 300.0,
    )
    world = World(spec, devices, artifact_size=300, skip=skip)
    bound = max(1, width.of(len(devices)))
    halted = False
    for step, event in enumerate(events):
        if event == "flip":
            device = devices[flips[step] % len(devices)]
            device.online = not device.online
        elif event == "pause":
            world.set(paused=True)
        elif event == "resume":
            world.set(paused=False)
        elif event == "abort":
            world.set(aborted=True)
        elif event == "undo":
            world.set(undo_requested=True)
        elif event == "late":
            world.now += 100.0
        views = [d.view() for d in devices]
        replay = plan(
            world.rollout,
            world.status,
            views,
            world.progress,
            now=world.now,
            artifact_size=300,
            skip=skip,
        )
        result = world.tick()
        assert result == replay, "a plan is a function of its inputs"

        in_progress = sum(1 for r in world.progress.values() if S.IN_PROGRESS in (r.state, r.undo))
        assert in_progress <= bound
        halted = halted or result.status.phase is P.HALTED
        if halted:
            assert not [s for s in result.starts if not s.undo], "started after a halt"
            assert result.status.phase in (P.HALTED, P.ABORTED, P.UNDOING, P.UNDONE)

        assert set(result.states) == {d.device_id for d in devices}
        assert sum(result.status.counts.values()) == len(devices)
        if result.status.phase is P.DONE:
            assert {s for s, _ in result.states.values()} <= {
                S.SUCCEEDED,
                S.ROLLED_BACK,
                S.FAILED,
                S.SKIPPED,
            }
        for device_id, (state, _) in result.states.items():
            if state is S.SUCCEEDED and world.progress[device_id].wave is not None:
                assert NEW in (t for _, t in world.devices[device_id].markers_seen)
        for device in devices:  # a device failing a gate is never attempted
            gated = device.labels["free_disk_bytes"] == "100" or skipped_by(skip, device.view())
            if gated:
                assert NEW not in (t for _, t in device.markers_seen), device.device_id
                assert result.states[device.device_id][0] is S.SKIPPED  # a gate or the deadline
