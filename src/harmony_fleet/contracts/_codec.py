"""Strict encoding and decoding of wire types, with errors that name the field.

msgspec is used because it validates while it parses, in C, with no intermediate dict: the
operator must ingest tens of thousands of heartbeats per second (see docs/contracts.md for the
measurement). Every decode goes through :class:`Codec`, which

* refuses payloads over :data:`MAX_MESSAGE_BYTES` before parsing them,
* maps msgspec's errors to :class:`~harmony_fleet.errors.InvalidMessage` with a JSON path
  (``$.agent_version``) so that a receiver can log exactly what was wrong and drop the message.

Unknown fields are ignored (an older operator must accept a newer agent's heartbeat); a missing
or mistyped known field, an unknown enum value or a value outside its pattern is an error.
"""

from __future__ import annotations

import re
from typing import Any, Generic, TypeVar

import msgspec

from harmony_fleet.errors import InvalidMessage

#: Largest message accepted on any subject or KV key. NATS's own default max_payload is 1 MiB;
#: our messages are small, and a bound this tight keeps a misbehaving peer from costing memory.
MAX_MESSAGE_BYTES = 64 * 1024

T = TypeVar("T")

_AT = re.compile(r" - at `(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<name>[^`]*)`")

_encoder = msgspec.json.Encoder()


def encode(value: Any) -> bytes:
    """Encode a wire value to compact JSON bytes."""
    return _encoder.encode(value)


def _field_of(message: str) -> tuple[str, str]:
    """Split a msgspec error message into (JSON path, reason)."""
    path = "$"
    reason = message
    at = _AT.search(message)
    if at:
        path = at.group("path")
        reason = message[: at.start()]
    missing = _MISSING.search(reason)
    if missing:
        path = f"{path}.{missing.group('name')}"
    return path, reason


class Codec(Generic[T]):
    """A reusable strict decoder for one wire type (decoders are compiled once, then fast)."""

    def __init__(self, type_: type[T], *, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.type = type_
        self.name = getattr(type_, "__name__", str(type_))
        self.max_bytes = max_bytes
        self._decoder: msgspec.json.Decoder[T] = msgspec.json.Decoder(type_)

    def decode(self, data: bytes | bytearray | memoryview | str) -> T:
        """Decode ``data`` or raise :class:`InvalidMessage` naming the offending field."""
        if len(data) > self.max_bytes:
            raise InvalidMessage(
                "$",
                f"payload of {len(data)} bytes exceeds the {self.max_bytes}-byte limit",
                type_name=self.name,
            )
        try:
            return self._decoder.decode(data)
        except msgspec.ValidationError as exc:
            path, reason = _field_of(str(exc))
            raise InvalidMessage(path, reason, type_name=self.name) from exc
        except msgspec.DecodeError as exc:
            raise InvalidMessage("$", str(exc), type_name=self.name) from exc

    def convert(self, obj: Any) -> T:
        """Validate an already-parsed object (for instance a command's ``args``)."""
        try:
            return msgspec.convert(obj, self.type)
        except msgspec.ValidationError as exc:
            path, reason = _field_of(str(exc))
            raise InvalidMessage(path, reason, type_name=self.name) from exc

    encode = staticmethod(encode)
