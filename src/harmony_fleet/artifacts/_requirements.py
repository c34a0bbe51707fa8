"""Just enough of PEP 508 to walk installed requirements: names, extras and environment markers.

Why not ``packaging``: it is not a runtime dependency of harmony-fleet (it only arrives with the
dev tools), and ``fleet artifact build`` must work from a plain production install, offline. The
markers that real wheels carry are a small language (comparisons joined by ``and``/``or`` with
parentheses), so a 100-line evaluator is cheaper than a new dependency. An integration test checks
it against ``packaging`` on every requirement installed in the development environment.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from dataclasses import dataclass

from harmony_fleet.errors import ConfigError

_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(\[([^\]]*)\])?")
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<lpar>\()|(?P<rpar>\))
      | (?P<op>===|==|!=|<=|>=|~=|<|>|not\s+in\b|in\b)
      | (?P<bool>and\b|or\b)
      | (?P<str>'[^']*'|"[^"]*")
      | (?P<var>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
_VERSION_VARS = frozenset({"python_version", "python_full_version", "implementation_version"})


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: ``Markdown_It.py`` and ``markdown-it-py`` are the same project."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Requirement:
    """One parsed ``Requires-Dist`` line: the project, the extras asked of it, its marker."""

    name: str
    extras: frozenset[str]
    marker: str | None

    def applies(self, env: dict[str, str], extras: frozenset[str]) -> bool:
        """True when the marker holds here for no extra or for one of ``extras``."""
        if self.marker is None:
            return True
        return any(evaluate_marker(self.marker, {**env, "extra": extra}) for extra in {"", *extras})


def parse_requirement(line: str) -> Requirement:
    """Parse a ``Requires-Dist`` value; the version specifier is ignored (pip already chose)."""
    spec, _, marker = line.partition(";")
    match = _NAME.match(spec)
    if match is None:
        raise ConfigError(f"cannot parse requirement {line!r}")
    extras = frozenset(
        canonical_name(e.strip()) for e in (match.group(3) or "").split(",") if e.strip()
    )
    return Requirement(canonical_name(match.group(1)), extras, marker.strip() or None)


def default_environment() -> dict[str, str]:
    """The PEP 508 marker variables of the running interpreter."""
    impl = sys.implementation
    iv = impl.version
    impl_version = f"{iv.major}.{iv.minor}.{iv.micro}"
    if iv.releaselevel != "final":
        impl_version += iv.releaselevel[0] + str(iv.serial)
    return {
        "implementation_name": impl.name,
        "implementation_version": impl_version,
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    }


def _tokens(marker: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = marker.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ConfigError(f"cannot parse marker {marker!r} at {text[pos:]!r}")
        kind = m.lastgroup or ""
        out.append((kind, " ".join(m.group(kind).split())))
        pos = m.end()
    return out


def _version_key(value: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in value.split("."):
        digits = re.match(r"\d+", piece)
        parts.append(int(digits.group()) if digits else 0)
    return tuple(parts)


def _compare(lhs: str, op: str, rhs: str, *, as_version: bool) -> bool:
    if op in ("in", "not in"):
        return (lhs in rhs) == (op == "in")
    if op == "===":
        return lhs == rhs
    if as_version:
        a, b = _version_key(lhs), _version_key(rhs)
        width = max(len(a), len(b))
        a, b = a + (0,) * (width - len(a)), b + (0,) * (width - len(b))
        if op == "~=":
            prefix = len(_version_key(rhs)) - 1
            return a >= b and a[: max(prefix, 1)] == b[: max(prefix, 1)]
        return {
            "==": a == b,
            "!=": a != b,
            "<": a < b,
            "<=": a <= b,
            ">": a > b,
            ">=": a >= b,
        }[op]
    if op in ("==", "!="):
        return (lhs == rhs) == (op == "==")
    return {"<": lhs < rhs, "<=": lhs <= rhs, ">": lhs > rhs, ">=": lhs >= rhs}.get(op, False)


class _Parser:
    def __init__(self, marker: str, env: dict[str, str]) -> None:
        self.marker = marker
        self.tokens = _tokens(marker)
        self.pos = 0
        self.env = env

    def _peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def _take(self, kind: str) -> str:
        got_kind, value = self._peek()
        if got_kind != kind:
            raise ConfigError(f"cannot parse marker {self.marker!r}: expected {kind}")
        self.pos += 1
        return value

    def parse(self) -> bool:
        value = self._or()
        if self._peek()[0] != "end":
            raise ConfigError(f"cannot parse marker {self.marker!r}: trailing input")
        return value

    def _or(self) -> bool:
        value = self._and()
        while self._peek() == ("bool", "or"):
            self.pos += 1
            rhs = self._and()
            value = value or rhs
        return value

    def _and(self) -> bool:
        value = self._atom()
        while self._peek() == ("bool", "and"):
            self.pos += 1
            rhs = self._atom()
            value = value and rhs
        return value

    def _atom(self) -> bool:
        if self._peek()[0] == "lpar":
            self.pos += 1
            value = self._or()
            self._take("rpar")
            return value
        lhs_kind, lhs = self._operand()
        op = self._take("op")
        rhs_kind, rhs = self._operand()
        var = lhs if lhs_kind == "var" else rhs if rhs_kind == "var" else ""
        left = self._value(lhs_kind, lhs)
        right = self._value(rhs_kind, rhs)
        if var == "extra":
            left, right = canonical_name(left), canonical_name(right)
        return _compare(left, op, right, as_version=var in _VERSION_VARS)

    def _operand(self) -> tuple[str, str]:
        kind, value = self._peek()
        if kind not in ("str", "var"):
            raise ConfigError(f"cannot parse marker {self.marker!r}: expected a value")
        self.pos += 1
        return kind, value

    def _value(self, kind: str, token: str) -> str:
        if kind == "str":
            return token[1:-1]
        name = token.replace(".", "_")
        if name not in self.env:
            raise ConfigError(f"unknown marker variable {token!r} in {self.marker!r}")
        return self.env[name]


def evaluate_marker(marker: str, env: dict[str, str]) -> bool:
    """Evaluate a PEP 508 environment marker against ``env`` (which must define ``extra``)."""
    return _Parser(marker, env).parse()
