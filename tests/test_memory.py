"""ctbone.memory: large blocks come from the heap once retain_freed_memory has run (glibc only)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ctbone.memory import mallinfo, retain_freed_memory


def _mallinfo2():
    """glibc's mallinfo2 as a function to call before and after (skips the test where it is missing)."""
    if mallinfo() is None:
        pytest.skip("needs glibc >= 2.33 (mallinfo2)")
    return mallinfo


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
    # 128 MiB and more: a mapping of its own, returned when freed (such blocks left holes the heap grew past)
    huge = np.ones(128 * 2**20, np.uint8)
    assert info().hblkhd >= mapped_before + 128 * 2**20 and info().arena == heap
    del huge
    assert info().hblkhd == mapped_before


def test_the_environment_can_leave_the_allocator_alone(monkeypatch):
    import ctbone.memory as memory

    monkeypatch.setattr(memory, "_done", False)
    monkeypatch.setenv("CTBONE_KEEP_FREED_MEMORY", "0")
    assert memory.retain_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_return_freed_memory_maps_large_blocks_again():
    # in a fresh process: in this one, earlier tests may have left free heap blocks that a new array reuses
    import textwrap

    _mallinfo2()  # skips without glibc >= 2.33
    script = textwrap.dedent("""
        import numpy as np
        import ctbone.memory as memory
        from tests.test_memory import _mallinfo2
        info = _mallinfo2()
        assert memory.retain_freed_memory()
        memory.return_freed_memory()
        before = info().hblkhd
        block = np.ones(64 * 2**20, np.uint8)
        assert info().hblkhd >= before + 64 * 2**20, "not mmap'd"
        del block
        assert info().hblkhd == before, "not unmapped when freed"
        assert memory.retain_freed_memory()  # and it can be kept again
        print("ok")
    """)
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "CTBONE_KEEP_FREED_MEMORY"}
    done = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_kept_free_memory_counts_as_available(monkeypatch):
    import ctbone.memory as memory
    from ctbone.io.slabs import available_memory_bytes

    _mallinfo2()  # skips without glibc >= 2.33
    monkeypatch.delenv("CTBONE_KEEP_FREED_MEMORY", raising=False)
    assert memory.retain_freed_memory() is True
    block = np.ones(100 * 2**20, np.uint8)
    del block  # 100 MiB freed, kept in the heap
    assert memory.kept_free_bytes() >= 100 * 2**20
    # the system's figure plus what is kept (MemAvailable itself moves a little between two reads)
    monkeypatch.setattr(memory, "kept_free_bytes", lambda: 0)
    system = available_memory_bytes()
    monkeypatch.setattr(memory, "kept_free_bytes", lambda: 10 * 2**30)
    assert abs(available_memory_bytes() - system - 10 * 2**30) < 2**30
    monkeypatch.undo()
    monkeypatch.setattr(memory, "_done", False)
    assert memory.kept_free_bytes() == 0  # nothing is kept for reuse when the allocator is left alone


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="numpy advises huge pages on Linux only")
def test_numpy_huge_page_advice_is_turned_off_with_the_allocator_and_left_alone_on_request(monkeypatch):
    import ctbone.memory as memory

    previous = memory.set_numpy_huge_page_advice(True)
    if previous is None:
        pytest.skip("this numpy has no huge-page switch")
    try:
        monkeypatch.setattr(memory, "_done", False)
        monkeypatch.setenv("CTBONE_KEEP_FREED_MEMORY", "0")
        memory.retain_freed_memory()
        assert memory.set_numpy_huge_page_advice(True) is True  # left alone
        monkeypatch.delenv("CTBONE_KEEP_FREED_MEMORY")
        memory.retain_freed_memory()
        assert memory.set_numpy_huge_page_advice(True) is False  # turned off
    finally:
        memory.set_numpy_huge_page_advice(previous)



# run in a fresh process: the test's own heap must hold only the freed block it makes
_SPARSE_ZEROS_CHECK = """
import os
import numpy as np
from ctbone.memory import retain_freed_memory, sparse_zeros

def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

assert retain_freed_memory()
dirty = np.ones(120 * 2**20, np.uint8)  # resident, then freed into the kept heap
del dirty
before = resident_mib()
mask = sparse_zeros((256, 512, 512), bool)  # 64 MiB
assert mask.shape == (256, 512, 512) and mask.dtype == bool and mask.flags.writeable and mask.flags.c_contiguous
assert not mask.any()  # every page read: a private mapping reads the shared zero page
mask[100:104] = True  # 1 MiB written
# the kept 120 MiB are left to an array that fills its pages (np.zeros would have taken 64 MiB of them,
# cleared page by page, and this one would have needed new pages)
filled = np.ones(96 * 2**20, np.uint8)
grown = resident_mib() - before
assert grown < 24, grown
assert np.count_nonzero(mask) == 4 * 512 * 512
view = mask[100]
del mask
assert view.all()  # a view keeps the mapping alive
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc, /proc/self/statm")
def test_sparse_zeros_makes_only_the_written_pages_resident_even_with_freed_memory_kept():
    env = {k: v for k, v in os.environ.items() if k != "CTBONE_KEEP_FREED_MEMORY"}
    done = subprocess.run([sys.executable, "-c", _SPARSE_ZEROS_CHECK], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]


def test_sparse_zeros_small_arrays_are_ordinary_zeros():
    from ctbone.memory import sparse_zeros

    small = sparse_zeros(10, np.uint16)
    assert small.shape == (10,) and small.dtype == np.uint16 and not small.any() and small.base is None
