"""Real :class:`~harmony_fleet.core.upgrade.executor.UpgradeExecutor` implementations.

``process`` runs candidates as detached processes (hosts without systemd, development, the
demo); ``systemd`` runs them as transient units (production). Both share :mod:`.launch`, which
says how an agent artifact is started, so the main instance, the self-test and the candidate are
always started the same way.
"""
