"""ctbone.memory: large blocks come from the heap once retain_freed_memory has run (glibc only)."""

import ctypes
import ctypes.util
import sys

import numpy as np
import pytest

from ctbone.memory import retain_freed_memory


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _mallinfo2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        pytest.skip("needs glibc >= 2.33 (mallinfo2)")
    fn.restype = _MallInfo2
    return fn


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_large_arrays_come_from_the_heap_and_are_reused(monkeypatch):
    info = _mallinfo2()
    monkeypatch.delenv("CTBONE_KEEP_FREED_MEMORY", raising=False)
    assert retain_freed_memory() is True
    assert retain_freed_memory() is True  # a second call is harmless
    mapped_before = info().hblkhd
    block = np.ones(64 * 2**20, np.uint8)  # 64 MiB: mmap'd by default (over glibc's 32 MiB ceiling)
    assert info().hblkhd == mapped_before  # not a new mmap: from the heap
    heap = info().arena
    del block
    again = np.ones(64 * 2**20, np.uint8)
    assert info().arena == heap  # the freed block was kept and reused: the heap did not grow
    assert again.sum() == 64 * 2**20


def test_the_environment_can_leave_the_allocator_alone(monkeypatch):
    import ctbone.memory as memory

    monkeypatch.setattr(memory, "_done", False)
    monkeypatch.setenv("CTBONE_KEEP_FREED_MEMORY", "0")
    assert memory.retain_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_return_freed_memory_maps_large_blocks_again(monkeypatch):
    import ctbone.memory as memory

    info = _mallinfo2()
    monkeypatch.delenv("CTBONE_KEEP_FREED_MEMORY", raising=False)
    assert memory.retain_freed_memory() is True
    memory.return_freed_memory()
    mapped_before = info().hblkhd
    block = np.ones(64 * 2**20, np.uint8)
    assert info().hblkhd >= mapped_before + 64 * 2**20  # mmap'd again, unmapped when freed
    del block
    assert memory.retain_freed_memory() is True  # and it can be kept again
