"""The package's shape rules, checked on the source tree (see docs/architecture.md).

* no module over 400 lines: a module a person can read in one sitting;
* no ``_private`` module (or name) imported from outside the package that owns it: a package's
  private parts are its own, and what others may use it re-exports.

Both rules are cheap to break by accident in a move; these tests name the file that broke one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import harmony_fleet

SRC = Path(harmony_fleet.__file__).resolve().parent
MAX_LINES = 400


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(SRC.parent)): n
        for _, path in _modules()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"


def _imported_names(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def test_no_private_module_is_imported_from_another_package() -> None:
    offences = []
    for module, path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name in _imported_names(tree):
            if not name.startswith("harmony_fleet."):
                continue
            parts = name.split(".")
            for i, part in enumerate(parts):
                if part.startswith("_") and not part.startswith("__"):
                    owner = ".".join(parts[:i])
                    if not f"{module}.".startswith(f"{owner}."):
                        offences.append(f"{module} imports {name}")
                    break
    assert offences == [], "private names used outside their package:\n" + "\n".join(offences)
