"""The device simulator (``fleet sim``): many simulated devices speaking the real protocol.

Like kwok for Kubernetes: users test their control plane with it, and ``bench/rollout.py``
runs 10,000 devices on it. A simulated device replaces the whole agent on the wire, not its
files or processes (that is ``testing.fake_device``): it heartbeats, follows its marker, writes
its statuses, answers ``upgrade_stop`` and plays the post-commit watch, through the real
contracts and NATS adapters, with a ``sim`` credential that gives it a device's rights for the
``sim-`` ids only (docs/sim.md). It sits beside the agent and the operator and imports neither.

* :mod:`.config`: the fleet to simulate (ids, labels, faults by share, timings), drawn from a
  seed;
* :mod:`.device`: one device's state and how it plays an upgrade;
* :mod:`.worker`: one process, one connection, one heartbeat scheduler for its devices;
* :mod:`.runner`: several worker processes, their progress and the summary.
"""
