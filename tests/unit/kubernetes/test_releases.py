"""The release catalogue's contract: keys for versions, strict decoding, same-artifact rule."""

from __future__ import annotations

import re

import msgspec
import pytest

from harmony_fleet.contracts import Codec
from harmony_fleet.contracts.releases import Release, release_key, version_of_key
from harmony_fleet.errors import InvalidMessage

NATS_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]+$")
RELEASE = Codec(Release)


@pytest.mark.parametrize("version", ["1.0.0", "2.0.0+build.7", "1.0.0-rc_1", "v3"])
def test_every_version_has_a_valid_kv_key_and_back(version: str) -> None:
    key = release_key(version)
    assert NATS_KEY.match(key)
    assert version_of_key(key) == version


def test_keys_do_not_collide() -> None:
    versions = ["1+2", "1_2", "1-2", "1.2", "1=2"[:1] + "2"]
    assert len({release_key(v) for v in versions}) == len(versions)


def test_decoding_is_strict() -> None:
    good = Release(version="2.0.0", artifact_url="http://a", sha256="c" * 64, published_at=1.0)
    assert RELEASE.decode(msgspec.json.encode(good)) == good
    bad = msgspec.json.encode({**msgspec.to_builtins(good), "sha256": "nothex"})
    with pytest.raises(InvalidMessage) as info:
        RELEASE.decode(bad)
    assert info.value.field == "$.sha256"


def test_the_same_artifact_ignores_who_published_it_and_when() -> None:
    a = Release(version="2.0.0", artifact_url="http://a", sha256="c" * 64, size=5, published_at=1.0)
    again = Release(
        version="2.0.0",
        artifact_url="http://a",
        sha256="c" * 64,
        size=5,
        published_at=9.0,
        published_by="someone",
    )
    other = Release(version="2.0.0", artifact_url="http://a", sha256="d" * 64, published_at=1.0)
    assert a.same_artifact(again)
    assert not a.same_artifact(other)
