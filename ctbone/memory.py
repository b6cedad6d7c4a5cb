"""Keep freed memory in the process: the analysis allocates and frees hundreds of volume-sized arrays.

By default glibc's malloc serves every block over 128 kB-32 MB with a fresh ``mmap`` and returns it
with ``munmap`` on free, so each of the analysis' working arrays costs new pages that the kernel must
fault in and zero one by one. On the 2-core VM of docs/performance.md that was a third of a 512^3
analysis' wall time in system time (14-23 s of 42-48 s). Serving all blocks from the heap and not
trimming it lets the next array reuse pages that are already mapped: the same 512^3 analysis ran in
31-37 s, with a peak resident size 4 % higher (the heap is not returned until the process ends).
Blocks of 128 MiB or more still get mappings of their own, returned when freed: the few arrays that size (a
scan, a crop's float32 box or uint16 codes) left holes in the kept heap that the smaller working arrays fitted
badly, and the heap grew past them (512^3: 1 182 -> 1 117 MB, the 1800x300x300 scan 1 491 -> 1 221 MB, for
0.6 s more of system time).

This changes the allocator of the whole process, so ctbone does it where it owns the process: the
``ctbone`` command and the batch's local worker processes (`ctbone.study`; not dask workers, whose
memory their nannies watch and trim). From a notebook, call
`retain_freed_memory` once, or start Python with
``MALLOC_MMAP_THRESHOLD_=134217728 MALLOC_TRIM_THRESHOLD_=2147483647``.
The same call turns off numpy's advice to use transparent huge pages, whose first touch stalled in memory
compaction (`set_numpy_huge_page_advice`; ``NUMPY_MADVISE_HUGEPAGE=0`` does it from the environment).
``CTBONE_KEEP_FREED_MEMORY=0`` in the environment leaves both as they are.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import mmap
import os
import sys

import numpy as np

log = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h) and glibc's defaults for them
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_DEFAULT_MMAP_MAX = 65536
_DEFAULT_TRIM_THRESHOLD_BYTES = 128 * 1024
# glibc's largest dynamic mmap threshold on 64-bit systems, where its threshold settles as an analysis frees blocks
_DEFAULT_MMAP_THRESHOLD_BYTES = 32 * 2**20
# blocks this size or more are mapped afresh even with freed memory kept (see the module docs)
_KEPT_MMAP_THRESHOLD_BYTES = 128 * 2**20
# the largest value mallopt's int parameter takes: free memory at the heap's top is kept up to 2 GiB
_TRIM_THRESHOLD_BYTES = 2 ** 31 - 1

_done = False


class MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (malloc.h): ``arena`` heap bytes, ``hblkhd`` mmap'd bytes, ``fordblks`` free."""

    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


@functools.lru_cache(maxsize=1)
def _glibc():
    """The process's own C library with ``mallopt`` typed, or None (not Linux, not glibc). Looked up once:
    the ctbone command asks at every start, and the memory check at every scan opened."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None)  # the symbols already loaded into this process: its libc among them
    try:
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.mallopt.restype = ctypes.c_int
    except AttributeError:  # not glibc
        return None
    return libc


def mallinfo() -> MallInfo2 | None:
    """glibc's ``mallinfo2()`` now, or None where it is missing (not glibc, or glibc < 2.33)."""
    libc = _glibc()
    fn = getattr(libc, "mallinfo2", None) if libc is not None else None
    if fn is None:
        return None
    fn.restype = MallInfo2
    return fn()


def trim_heap() -> None:
    """Give the heap's free pages back to the system now (glibc ``malloc_trim(0)``; nothing elsewhere)."""
    libc = _glibc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(ctypes.c_size_t(0))


def retain_freed_memory() -> bool:
    """Make glibc's malloc serve large blocks (up to 128 MiB) from the heap and keep freed memory for reuse.

    Also turns off numpy's huge-page advice for its arrays (`set_numpy_huge_page_advice`): both settings are
    about how fast this process's working arrays get their pages.

    Returns True when the malloc setting is in effect (glibc on Linux), False elsewhere (macOS, Windows,
    musl) or when ``CTBONE_KEEP_FREED_MEMORY=0``, where nothing is changed. Safe to call more than once.
    """
    global _done
    if _done:
        return True
    if os.environ.get("CTBONE_KEEP_FREED_MEMORY", "1") == "0":
        return False
    set_numpy_huge_page_advice(False)
    libc = _glibc()
    if libc is None:
        return False
    # mallopt returns 1 on success; a kept heap without the mmap threshold (or the reverse) is harmless. A glibc
    # that caps the threshold lower (at half its 64 MiB heap size) refuses 128 MiB: there no block is mapped
    if libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES) != 1 or (
            libc.mallopt(_M_MMAP_THRESHOLD, _KEPT_MMAP_THRESHOLD_BYTES) != 1 and libc.mallopt(_M_MMAP_MAX, 0) != 1):
        return False
    _done = True
    log.debug("malloc: blocks under 128 MiB from the heap, freed memory kept (mallopt)")
    return True


def set_numpy_huge_page_advice(enabled: bool) -> bool | None:
    """Whether numpy asks Linux for transparent huge pages (``madvise(MADV_HUGEPAGE)``) for its large arrays;
    returns the previous setting (None where numpy has no such switch).

    With the kernel's usual ``defrag = madvise``, every first touch of such an array may stall while the kernel
    compacts memory into 2 MB pages. `retain_freed_memory` turns the advice off: a fresh 512^3 analysis spent
    4.0-4.6 s in the kernel with it and 1.4-2.2 s without, and ran 1.3-4.6 s faster (five alternating pairs:
    27.1 s against 24.2 s on average; the same user time, and a 40 MB lower peak); at 256^3 no difference.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    getter = getattr(multiarray, "_get_madvise_hugepage", None)
    setter = getattr(multiarray, "_set_madvise_hugepage", None)
    if getter is None or setter is None:
        return None
    previous = bool(getter())
    setter(bool(enabled))
    return previous


def return_freed_memory() -> None:
    """Undo `retain_freed_memory`: blocks over 32 MiB (glibc's usual threshold once it has adapted) are mapped
    and unmapped again, and the heap's free pages go back to the system now. For scans read slab by slab (they do
    not fit in memory): there the kept pages raised the peak by a quarter (512^3 bench scan with ``--low-memory``:
    3.2 GB against 2.6 GB)."""
    global _done
    if not _done:
        return
    libc = _glibc()
    libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
    libc.mallopt(_M_MMAP_THRESHOLD, _DEFAULT_MMAP_THRESHOLD_BYTES)
    libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD_BYTES)
    trim_heap()
    _done = False
    log.debug("malloc: freed memory goes back to the system again")


def kept_free_bytes() -> int:
    """Free memory this process's heap holds for reuse (glibc ``mallinfo2().fordblks``) while
    `retain_freed_memory` is in effect; 0 otherwise or where unknown. The system's MemAvailable does not
    count it, though the next arrays of this process will use it."""
    if not _done:
        return 0
    info = mallinfo()
    return int(info.fordblks) if info is not None else 0


# below this, an array of zeros comes from malloc: a mapping of its own costs a system call and a page at least
_SPARSE_ZEROS_MIN_BYTES = 1 << 20


def sparse_zeros(shape, dtype) -> np.ndarray:
    """An array of zeros whose pages become resident only where it is written, whatever malloc keeps.

    For a volume-sized mask written on a small box (a lesion on the scan's grid). ``np.zeros`` gives that
    only when malloc maps the block afresh; with freed memory kept (`retain_freed_memory`, as the ``ctbone``
    command runs) the block may be reused heap, which calloc clears page by page, so that every page of
    the volume becomes resident. Here the array has an anonymous mapping of its own, whose pages the kernel
    supplies as zeros on their first touch, and which is unmapped when the array and its views are gone.
    Small arrays come from ``np.zeros``.
    """
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    private = getattr(mmap, "MAP_PRIVATE", None)  # POSIX only
    if nbytes < _SPARSE_ZEROS_MIN_BYTES or private is None:
        return np.zeros(shape, dtype)
    # private: a page only read maps the kernel's shared zero page (a shared anonymous mapping would give
    # every page read, say by ``mask.any()``, memory of its own)
    return np.frombuffer(mmap.mmap(-1, nbytes, flags=private), dtype=dtype).reshape(shape)
