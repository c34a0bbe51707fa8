"""The operator: the control plane's view of the fleet, and the only one who commits upgrades.

It ingests every heartbeat, keeps the device registry in NATS KV (so a restart loses nothing),
and coordinates upgrades: it sends ``UpgradeStop`` only after it has itself seen the new version
working. It never imports the agent.
"""
