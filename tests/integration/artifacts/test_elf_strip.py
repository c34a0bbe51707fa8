"""Debug sections left out of shipped shared libraries (``artifacts.elf``), with real libraries.

PyNaCl's wheel ships libsodium with its DWARF debug information (3 of 3.7 MB): stripped, the
library must still load and sign, and be smaller; a library without debug information, and
anything that is not a shared library we can rewrite, must come back byte for byte.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import msgspec
import nacl

from harmony_fleet.artifacts.elf import strip_debug

SODIUM = Path(nacl.__file__).parent / "_sodium.abi3.so"
SIGN_AND_VERIFY = (
    "import nacl, nacl.signing\n"
    "key = nacl.signing.SigningKey.generate()\n"
    "key.verify_key.verify(key.sign(b'heartbeat'))\n"
    "print(nacl.__file__)\n"
)


def test_a_stripped_libsodium_is_smaller_and_still_signs(tmp_path: Path) -> None:
    original = SODIUM.read_bytes()
    stripped = strip_debug(original)
    assert len(stripped) < len(original) // 3
    assert strip_debug(stripped) == stripped  # nothing left to strip
    copy = tmp_path / "nacl"
    shutil.copytree(SODIUM.parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / SODIUM.name).write_bytes(stripped)
    done = subprocess.run(
        [sys.executable, "-c", SIGN_AND_VERIFY],
        env={"PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(copy / "__init__.py")  # the stripped copy was loaded


def test_what_has_no_debug_sections_comes_back_unchanged() -> None:
    core = next(Path(msgspec.__file__).parent.glob("_core*.so")).read_bytes()
    assert strip_debug(core) == core
    for data in (
        b"",
        b"not an ELF file",
        b"\x7fELF\x02\x01" + b"\0" * 10,
        SODIUM.read_bytes()[:200],
    ):
        assert strip_debug(data) == data
