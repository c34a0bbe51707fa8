"""Small helpers of the download module: writev with short writes, Content-Range parsing."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from harmony_fleet.adapters.http.attempts import RestartFromZero, content_range
from harmony_fleet.adapters.http.partfile import writev_all


def testwritev_all_finishes_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.writev

    def short(fd: int, buffers: list[bytes]) -> int:
        return real(fd, [bytes(buffers[0][:3])])  # the kernel took only 3 bytes

    monkeypatch.setattr(os, "writev", short)
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        assert writev_all(fd, [b"hello ", b"world"]) == 11
    finally:
        os.close(fd)
    assert path.read_bytes() == b"hello world"


def testwritev_all_joins_more_pieces_than_the_kernel_takes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        writev_all(fd, [b"a"] * 5000)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"a" * 5000


def _resp(content_range: str | None) -> httpx.Response:
    headers = {} if content_range is None else {"Content-Range": content_range}
    return httpx.Response(206, headers=headers)


def testcontent_range() -> None:
    assert content_range(_resp("bytes 10-99/100")) == (10, 100)
    assert content_range(_resp("bytes 10-99/*")) == (10, None)


@pytest.mark.parametrize("value", [None, "", "bytes */100", "items 1-2/3"])
def test_unusablecontent_range_restarts(value: str | None) -> None:
    with pytest.raises(RestartFromZero):
        content_range(_resp(value))
