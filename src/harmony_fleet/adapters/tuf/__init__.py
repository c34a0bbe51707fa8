"""TUF adapter: the device's view of the signed release repository (python-tuf's ngclient).

:mod:`.client` refreshes the signed metadata (root chain, timestamp, snapshot, targets) from
NATS (the ``fleet_tuf`` KV bucket and the ``fleet_artifacts`` object store, by direct gets) or
from an HTTPS mirror, looks a version up as a target and fetches its bytes within the signed
length and hashes. Import it only when an upgrade starts: it brings ``tuf`` and
``securesystemslib``, which an idle agent does not carry.

The repository side (the release manager's ``fleet release`` and the operator's refresh):
:mod:`.repository` makes and signs the metadata with python-tuf's Metadata API, :mod:`.keys`
keeps the signing keys in 0600 files, :mod:`.store` holds metadata files (a folder or memory),
:mod:`.published` reads and writes the published repository in NATS.
"""
