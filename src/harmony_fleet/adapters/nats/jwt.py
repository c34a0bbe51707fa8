"""NATS nkeys and JWTs: the small encoder behind decentralised authentication.

A NATS JWT is ``base64url(header) . base64url(claims) . base64url(signature)`` without padding,
with the header ``{"typ":"JWT","alg":"ed25519-nkey"}`` and an Ed25519 signature by the issuer's
nkey over the first two parts (nats-io/jwt v2, ``claims.go``). The claims are the standard ones
(``jti``, ``iat``, ``iss``, ``name``, ``sub``) plus a ``nats`` object whose ``type`` is
``operator``, ``account`` or ``user`` and whose ``version`` is 2. ``jti`` is the unpadded base32
SHA-512/256 of the standard claims serialised with an empty ``jti``, as the Go library does.

Who signs what: the operator key signs account JWTs (and its own), an account key signs its
users' JWTs. A ``.creds`` file holds a user's JWT and seed in the armoured format that nats-py
(``user_credentials=``) and the ``nats`` CLI read.

Only :mod:`harmony_fleet.adapters.nats.auth` and the tests use this module; agents never sign
anything (nats-py signs the server's nonce with the seed in the ``.creds`` file).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.signing
import nkeys

from harmony_fleet.errors import ConfigError

log = logging.getLogger(__name__)

HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}

#: nkey prefixes by role (nkeys' version bytes).
PREFIXES = {
    "operator": nkeys.PREFIX_BYTE_OPERATOR,
    "account": nkeys.PREFIX_BYTE_ACCOUNT,
    "user": nkeys.PREFIX_BYTE_USER,
}


@dataclass(frozen=True)
class NKey:
    """One nkey: its seed (secret) and public key (``O…``, ``A…`` or ``U…``)."""

    seed: str
    public: str

    @classmethod
    def create(cls, kind: str) -> NKey:
        seed = nkeys.encode_seed(os.urandom(32), PREFIXES[kind]).decode()
        return cls.from_seed(seed)

    @classmethod
    def from_seed(cls, seed: str) -> NKey:
        try:
            kp = nkeys.from_seed(seed.strip().encode())
        except (nkeys.NkeysError, ValueError) as exc:
            raise ConfigError(f"not an nkey seed: {exc}") from exc
        return cls(seed=seed.strip(), public=kp.public_key.decode())

    def sign(self, data: bytes) -> bytes:
        signed: bytes = nkeys.from_seed(self.seed.encode()).sign(data)
        return signed


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _jti(claims: dict[str, Any]) -> str:
    # The Go library hashes ClaimsData (aud exp jti iat iss name nbf sub, empty ones left out).
    order = ("aud", "exp", "jti", "iat", "iss", "name", "nbf", "sub")
    base = {k: claims[k] for k in order if claims.get(k)}
    raw = json.dumps(base, separators=(",", ":")).encode()
    return base64.b32encode(hashlib.new("sha512_256", raw).digest()).rstrip(b"=").decode()


def encode(*, issuer: NKey, subject: str, name: str, nats: dict[str, Any], iat: int = 0) -> str:
    """A signed JWT: ``issuer`` signs claims about ``subject`` (a public key)."""
    claims: dict[str, Any] = {
        "iat": iat or int(time.time()),
        "iss": issuer.public,
        "name": name,
        "sub": subject,
    }
    claims["jti"] = _jti(claims)
    claims["nats"] = {**nats, "version": 2}
    head = _b64(json.dumps(HEADER, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = issuer.sign(f"{head}.{body}".encode())
    return f"{head}.{body}.{_b64(signature)}"


def _verify(public: str, data: bytes, signature: bytes) -> None:
    # nkeys' KeyPair verifies only with a seed; a public key is base32(prefix, 32 bytes, crc16).
    raw = base64.b32decode(public + "=" * (-len(public) % 8))
    nacl.signing.VerifyKey(raw[1:33]).verify(data, signature)


def decode(token: str) -> dict[str, Any]:
    """The claims of ``token`` after checking its header and its issuer's signature."""
    try:
        head, body, sig = token.strip().split(".")
        header = json.loads(_unb64(head))
        claims: dict[str, Any] = json.loads(_unb64(body))
        _verify(claims["iss"], f"{head}.{body}".encode(), _unb64(sig))
    except (ValueError, KeyError, nacl.exceptions.BadSignatureError) as exc:
        raise ConfigError(f"not a valid NATS JWT: {exc!r}") from exc
    if header != HEADER:
        raise ConfigError(f"not a NATS JWT header: {header}")
    return claims


def operator_jwt(operator: NKey, *, name: str, system_account: str) -> str:
    """The operator's self-signed JWT naming the system account."""
    nats = {"type": "operator", "system_account": system_account}
    return encode(issuer=operator, subject=operator.public, name=name, nats=nats)


def account_jwt(
    operator: NKey,
    account: str,
    *,
    name: str,
    jetstream: bool,
    revocations: dict[str, int] | None = None,
) -> str:
    """An account JWT signed by the operator; ``revocations`` maps user keys to the time
    (Unix seconds) before which their JWTs are revoked."""
    limits: dict[str, Any] = {
        "subs": -1,
        "data": -1,
        "payload": -1,
        "imports": -1,
        "exports": -1,
        "wildcards": True,
        "conn": -1,
        "leaf": -1,
    }
    if jetstream:
        limits.update({"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1})
    nats: dict[str, Any] = {"type": "account", "limits": limits, "default_permissions": {}}
    if revocations:
        nats["revocations"] = dict(sorted(revocations.items()))
    return encode(issuer=operator, subject=account, name=name, nats=nats)


@dataclass(frozen=True)
class Permissions:
    """What a user may do: subjects it may publish to and subscribe to (allow and deny lists),
    and whether it may answer requests it received (one reply each)."""

    pub_allow: tuple[str, ...] = ()
    pub_deny: tuple[str, ...] = ()
    sub_allow: tuple[str, ...] = ()
    sub_deny: tuple[str, ...] = ()
    responses: bool = False

    def claims(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pub": {}, "sub": {}}
        for key, allow, deny in (
            ("pub", self.pub_allow, self.pub_deny),
            ("sub", self.sub_allow, self.sub_deny),
        ):
            if allow:
                out[key]["allow"] = list(allow)
            if deny:
                out[key]["deny"] = list(deny)
        if self.responses:
            out["resp"] = {"max": 1, "ttl": 0}
        return out


#: Everything (the admin's and the system user's permissions).
ALL = Permissions()


def user_jwt(account: NKey, user: str, *, name: str, permissions: Permissions) -> str:
    """A user JWT signed by its account's key."""
    nats = {"type": "user", "subs": -1, "data": -1, "payload": -1, **permissions.claims()}
    return encode(issuer=account, subject=user, name=name, nats=nats)


def creds(jwt: str, seed: str) -> str:
    """The ``.creds`` text for a user (its JWT and its seed)."""
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{jwt}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{seed}\n"
        "------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )


def read_creds(text: str) -> tuple[str, str]:
    """The JWT and the seed of a ``.creds`` text."""
    lines = [line.strip() for line in text.splitlines()]
    found: dict[str, str] = {}
    for here, after in zip(lines, [*lines[1:], ""], strict=True):
        if here.startswith("-----BEGIN NATS USER JWT"):
            found["jwt"] = after
        elif here.startswith("-----BEGIN USER NKEY SEED"):
            found["seed"] = after
    if not found.get("jwt") or not found.get("seed"):
        raise ConfigError("not a NATS .creds file (no user JWT and seed in it)")
    return found["jwt"], found["seed"]
