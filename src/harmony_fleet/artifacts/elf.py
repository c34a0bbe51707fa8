"""Debug information left out of the shared libraries an artifact ships (``strip --strip-debug``).

Some wheels ship their compiled code with DWARF debug information: PyNaCl's ``_sodium.abi3.so``
is 3.7 MB of which 3.1 MB are ``.debug_*`` sections, a third of an agent artifact once
compressed. No device reads them (they serve debuggers), and the builder must stay offline,
pure Python and reproducible, so it does not call binutils: :func:`strip_debug` rewrites the
file itself.

What it changes, and why that is safe: in a shared library every byte the loader maps lies in a
``PT_LOAD`` segment; debug sections are not allocated (no ``SHF_ALLOC``) and sit after the last
segment, with the symbol tables and the section header table. Only that tail is rewritten: the
debug sections keep their header entry (so every section index, ``sh_link`` and ``e_shstrndx``
stays valid) with a size of zero, the other tail sections (``.symtab``, ``.strtab``,
``.shstrtab``, ``.comment``...) are copied in their order at their alignment, and the section
header table follows them. A file that does not look like that (not ELF, a debug section inside
a segment, headers where they should not be) is returned unchanged: stripping is an
optimisation, never a risk.
"""

from __future__ import annotations

import logging
import struct

log = logging.getLogger(__name__)

__all__ = ["strip_debug"]

_MAGIC = b"\x7fELF"
_SHF_ALLOC = 0x2
_SHT_NOBITS = 8
_DEBUG_PREFIXES = (b".debug", b".zdebug")
# Field positions in a section header: type, flags, offset, size, alignment.
_TYPE, _FLAGS, _OFFSET, _SIZE, _ALIGN = 1, 2, 4, 5, 8


def _formats(elf_class: int, order: str) -> tuple[str, str, str, tuple[int, int]] | None:
    """ELF header, section header, program header formats; (offset, filesz) in a program header."""
    if elf_class == 2:
        return order + "16sHHIQQQIHHHHHH", order + "IIQQQQIIQQ", order + "IIQQQQQQ", (2, 5)
    if elf_class == 1:
        return order + "16sHHIIIIIHHHHHH", order + "IIIIIIIIII", order + "IIIIIIII", (1, 4)
    return None


def strip_debug(data: bytes) -> bytes:
    """``data`` (a shared library) without the contents of its debug sections, or unchanged."""
    if len(data) < 64 or data[:4] != _MAGIC or data[5] not in (1, 2):
        return data
    formats = _formats(data[4], "<" if data[5] == 1 else ">")
    if formats is None:
        return data
    ehdr_fmt, shdr_fmt, phdr_fmt, (p_offset, p_filesz) = formats
    try:
        return _strip(data, ehdr_fmt, shdr_fmt, phdr_fmt, p_offset, p_filesz)
    except struct.error:
        return data  # truncated or inconsistent headers: not ours to fix


def _table(data: bytes, fmt: str, offset: int, entsize: int, count: int) -> list[list[int]]:
    return [list(struct.unpack_from(fmt, data, offset + i * entsize)) for i in range(count)]


def _strip(
    data: bytes, ehdr_fmt: str, shdr_fmt: str, phdr_fmt: str, p_off: int, p_size: int
) -> bytes:
    header = list(struct.unpack_from(ehdr_fmt, data, 0))
    e_phoff, e_shoff = header[5], header[6]
    e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx = header[9:14]
    if not e_shnum or e_shentsize != struct.calcsize(shdr_fmt) or e_shstrndx >= e_shnum:
        return data
    segments = _table(data, phdr_fmt, e_phoff, e_phentsize, e_phnum)
    loaded_end = max(
        [struct.calcsize(ehdr_fmt), e_phoff + e_phnum * e_phentsize]
        + [s[p_off] + s[p_size] for s in segments]
    )
    sections = _table(data, shdr_fmt, e_shoff, e_shentsize, e_shnum)
    names = sections[e_shstrndx]
    table = data[names[_OFFSET] : names[_OFFSET] + names[_SIZE]]

    def name(section: list[int]) -> bytes:
        return table[section[0] : table.index(b"\0", section[0])]

    debug = {
        i for i, s in enumerate(sections)
        if name(s).startswith(_DEBUG_PREFIXES) and not s[_FLAGS] & _SHF_ALLOC
    }  # fmt: skip
    if not debug or e_shoff < loaded_end:
        return data
    tail = []
    for i, s in enumerate(sections):
        if i == 0 or s[_TYPE] == _SHT_NOBITS:
            continue
        if s[_OFFSET] >= loaded_end:
            tail.append(i)
        elif s[_OFFSET] + s[_SIZE] > loaded_end or i in debug:
            return data  # straddles the last segment's end, or debug data inside a segment
    out = bytearray(data[:loaded_end])
    for i in sorted(tail, key=lambda i: sections[i][_OFFSET]):
        s = sections[i]
        content = b"" if i in debug else data[s[_OFFSET] : s[_OFFSET] + s[_SIZE]]
        out += b"\0" * (-len(out) % max(s[_ALIGN], 1))
        s[_OFFSET] = len(out)
        s[_SIZE] = len(content)
        out += content
    out += b"\0" * (-len(out) % 8)
    header[6] = len(out)
    for s in sections:
        out += struct.pack(shdr_fmt, *s)
    out[: struct.calcsize(ehdr_fmt)] = struct.pack(ehdr_fmt, *header)
    return bytes(out)
