"""The package's public surfaces say what is meant: ``contracts`` and ``errors`` export exactly
their public names, and ``errors``' tree diagram draws every error class of the package under
its real parent (an error defined beside its raiser still belongs to the one tree)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import types

import pytest

import harmony_fleet
import harmony_fleet.contracts as contracts
import harmony_fleet.errors as errors
from harmony_fleet.errors import FleetError

#: Submodules a package exports on purpose (``from harmony_fleet.contracts import subjects``).
EXPORTED_MODULES = {contracts: {"subjects"}, errors: set()}


def _public(module: types.ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"  # `from __future__ import annotations` binds this name
    }


@pytest.mark.parametrize("module", [contracts, errors], ids=lambda m: m.__name__)
def test_exported_members(module: types.ModuleType) -> None:
    exported = list(module.__all__)
    assert len(exported) == len(set(exported)), "no name twice"
    assert set(exported) == _public(module) | EXPORTED_MODULES[module]


@pytest.mark.parametrize("module", [contracts, errors], ids=lambda m: m.__name__)
def test_exported_members_are_defined_in_the_package_they_are_exported_from(
    module: types.ModuleType,
) -> None:
    for name in module.__all__:
        value = getattr(module, name)
        origin = getattr(value, "__module__", None)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert origin is not None and origin.startswith(module.__name__), (name, origin)


def _all_modules() -> list[types.ModuleType]:
    found = []
    for info in pkgutil.walk_packages(harmony_fleet.__path__, "harmony_fleet."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        found.append(importlib.import_module(info.name))
    return found


def _error_classes() -> set[type[FleetError]]:
    _all_modules()
    seen: set[type[FleetError]] = set()
    todo: list[type[FleetError]] = [FleetError]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("harmony_fleet.") and cls not in seen:
            seen.add(cls)
            todo.extend(cls.__subclasses__())
    return seen


def _diagram() -> dict[str, str | None]:
    """Class name -> parent name, as drawn in errors.py's docstring."""
    assert errors.__doc__ is not None
    drawn: dict[str, str | None] = {}
    stack: list[str] = []
    for line in errors.__doc__.splitlines():
        root = re.fullmatch(r"    (FleetError)\s*", line)
        node = re.match(r"^    ([│ ]*)[├└]── (\w+)", line)
        if root:
            stack = ["FleetError"]
            drawn["FleetError"] = None
        elif node and stack:
            depth = len(node.group(1)) // 4 + 1
            del stack[depth:]
            drawn[node.group(2)] = stack[-1]
            stack.append(node.group(2))
    return drawn


def test_every_error_of_the_package_is_drawn_under_its_parent() -> None:
    drawn = _diagram()
    classes = _error_classes()
    assert len(classes) >= 24, "the walk found the package's errors"
    for cls in classes:
        assert cls.__name__ in drawn, f"{cls.__module__}.{cls.__name__} is not in errors.py's tree"
        parent = cls.__bases__[0].__name__ if cls is not FleetError else None
        assert drawn[cls.__name__] == parent, (cls.__name__, drawn[cls.__name__], parent)
    assert set(drawn) == {c.__name__ for c in classes}, "the tree draws no class that is gone"


def test_every_error_says_whether_to_retry() -> None:
    """Below the root, an error is permanent or temporary: the caller's next move is known."""
    for cls in _error_classes() - {FleetError, errors.PermanentError, errors.TemporaryError}:
        assert issubclass(cls, errors.PermanentError | errors.TemporaryError), cls
