"""The inbox prefix a ``.creds`` file allows, read from its JWT's subscribe permissions: what
lets ``fleet`` commands run with a device's or a viewer's credentials without a flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from harmony_fleet.adapters.nats import jwt as natsjwt
from harmony_fleet.adapters.nats.connection import inbox_prefix_of_creds
from harmony_fleet.adapters.nats.permissions import permissions_for
from harmony_fleet.contracts import subjects


def _creds(tmp_path: Path, permissions: natsjwt.Permissions) -> str:
    account, user = natsjwt.NKey.create("account"), natsjwt.NKey.create("user")
    token = natsjwt.user_jwt(account, user.public, name="x", permissions=permissions)
    path = tmp_path / "x.creds"
    path.write_text(natsjwt.creds(token, user.seed))
    return str(path)


@pytest.mark.parametrize(
    ("role", "name", "prefix"),
    [
        ("device", "edge-1", subjects.inbox_prefix("edge-1")),
        ("viewer", "ops", subjects.viewer_inbox_prefix("ops")),
        ("operator", "operator", None),  # may subscribe anywhere: nats-py's default prefix
        ("admin", "admin", None),
    ],
)
def test_the_prefix_is_the_one_the_role_allows(
    tmp_path: Path, role: str, name: str, prefix: str | None
) -> None:
    assert inbox_prefix_of_creds(_creds(tmp_path, permissions_for(role, name))) == prefix


def test_a_credential_allowed_all_inboxes_keeps_the_default(tmp_path: Path) -> None:
    old_viewer = natsjwt.Permissions(sub_allow=("fleet.*.heartbeat", "_INBOX.>"))
    assert inbox_prefix_of_creds(_creds(tmp_path, old_viewer)) == "_INBOX"


def test_an_unreadable_or_foreign_file_gives_none(tmp_path: Path) -> None:
    assert inbox_prefix_of_creds(str(tmp_path / "missing.creds")) is None
    (tmp_path / "junk.creds").write_text("-----BEGIN NATS USER JWT-----\nnot.a.jwt\n")
    assert inbox_prefix_of_creds(str(tmp_path / "junk.creds")) is None
