from __future__ import annotations

import platform

import pytest

from services.heap import release_free_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_free_pages_go_back_on_glibc() -> None:
    garbage = [bytes(4096) for _ in range(2000)]  # ~8 MB of malloc'd blocks, then freed
    del garbage
    assert release_free_memory() is True
