"""The NATS JWT encoder: header, claims, jti, signature, .creds (what nats-server 2.15 accepts is
proven by tests/security against a real server)."""

from __future__ import annotations

import base64
import json

import pytest

from harmony_fleet.adapters.nats import jwt as natsjwt
from harmony_fleet.adapters.nats.jwt import NKey, Permissions
from harmony_fleet.adapters.nats.permissions import device_permissions
from harmony_fleet.errors import ConfigError


def _part(token: str, index: int) -> dict[str, object]:
    raw = token.split(".")[index]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    return decoded


def test_keys_have_the_prefix_of_their_role() -> None:
    assert NKey.create("operator").public.startswith("O")
    assert NKey.create("account").public.startswith("A")
    user = NKey.create("user")
    assert user.public.startswith("U") and user.seed.startswith("SU")
    assert NKey.from_seed(user.seed) == user


def test_a_user_jwt_is_signed_by_its_account_and_carries_its_permissions() -> None:
    account, user = NKey.create("account"), NKey.create("user")
    token = natsjwt.user_jwt(
        account, user.public, name="edge-01", permissions=device_permissions("edge-01")
    )
    assert _part(token, 0) == {"typ": "JWT", "alg": "ed25519-nkey"}
    claims = natsjwt.decode(token)
    assert claims["iss"] == account.public and claims["sub"] == user.public
    nats = claims["nats"]
    assert isinstance(nats, dict) and nats["type"] == "user" and nats["version"] == 2
    assert "fleet.edge-01.heartbeat" in nats["pub"]["allow"]
    assert "fleet.*.cmd" in nats["pub"]["deny"]
    assert nats["resp"] == {"max": 1, "ttl": 0}
    assert len(str(claims["jti"])) == 52  # unpadded base32 of a 32-byte hash


def test_a_tampered_jwt_does_not_decode() -> None:
    account, user = NKey.create("account"), NKey.create("user")
    token = natsjwt.user_jwt(account, user.public, name="x", permissions=Permissions())
    head, _body, sig = token.split(".")
    claims = _part(token, 1)
    claims["name"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(ConfigError):
        natsjwt.decode(f"{head}.{forged}.{sig}")


def test_an_account_jwt_lists_revocations_and_enables_jetstream() -> None:
    operator, account = NKey.create("operator"), NKey.create("account")
    token = natsjwt.account_jwt(
        operator, account.public, name="FLEET", jetstream=True, revocations={"UABC": 12}
    )
    nats = natsjwt.decode(token)["nats"]
    assert isinstance(nats, dict)
    assert nats["revocations"] == {"UABC": 12}
    assert nats["limits"]["disk_storage"] == -1


def test_creds_round_trip_and_garbage_is_refused() -> None:
    user = NKey.create("user")
    token = natsjwt.user_jwt(
        NKey.create("account"), user.public, name="x", permissions=Permissions()
    )
    assert natsjwt.read_creds(natsjwt.creds(token, user.seed)) == (token, user.seed)
    with pytest.raises(ConfigError):
        natsjwt.read_creds("not creds")
