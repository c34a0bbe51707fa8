"""The device agent: heartbeats, commands, and (with ``agent.upgrade``) self-upgrade.

One process per device, run by systemd as the service's main instance, or started beside it as an
upgrade *candidate*. Both subscribe to the device's command subject; what each may act on depends
on its role. The agent never imports the operator.
"""
