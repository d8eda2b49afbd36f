from __future__ import annotations

import platform

from services.heap import release_free_memory


def test_free_pages_go_back_on_glibc_and_elsewhere_it_says_it_cannot() -> None:
    # No skip: on glibc the pages go back; on any other C library the call says it could not.
    garbage = [bytes(4096) for _ in range(2000)]  # ~8 MB of malloc'd blocks, then freed
    del garbage
    assert release_free_memory() is (platform.libc_ver()[0] == "glibc")
