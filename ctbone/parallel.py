"""Run a compiled kernel over independent items on numba's threads, without numba's parallel loops.

Each of numba's parallel loops (``prange`` in a ``parallel=True`` function) costs 1-3 s to compile on a
first run, on top of its body. A kernel compiled serially with ``nogil=True`` and taking its items'
range ``[start, stop)`` as its last two arguments runs as fast when chunks of the range are taken by the
calling thread and a pool of Python threads (the GIL is released inside the kernel), and compiles in a third of
the time:
`ctbone analyze` of the 256^3 bench scan on an empty numba cache took 44 s with the parallel loops and
19-24 s without (docs/performance.md, "First run").

The thread count is numba's (``NUMBA_NUM_THREADS``, lowered per task by batch workers with
``numba.set_num_threads``), read in the calling thread as numba's parallel loops read it.
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

# chunks per thread: small enough items for the threads to even out uneven work (a bone's metaphyses
# hold more than its shaft), few enough that handing them out costs nothing next to the kernel
CHUNKS_PER_THREAD = 4

_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()
_THREAD_PREFIX = "ctbone-kernel"


def thread_count() -> int:
    """Threads a kernel may use: numba's setting in the calling thread (at least 1)."""
    return max(1, int(numba.get_num_threads()))


def run_in_chunks(kernel, n_items: int, *args, chunks: int | None = None) -> list:
    """Call ``kernel(*args, start, stop)`` on consecutive chunks of ``range(n_items)``, on `thread_count` threads;
    the kernel's return values, in the chunks' order.

    The kernel must treat its items independently (each writes only its own part of the outputs), so the
    result is the same whatever the chunks and threads. ``chunks`` defaults to `CHUNKS_PER_THREAD` per
    thread (never more than ``n_items``). The calling thread takes chunks too, as numba's parallel loops did,
    each thread the next chunk left when it is done with one. An error in a chunk is raised here once every
    chunk has run (the first in the chunks' order).
    """
    n_items = int(n_items)
    if n_items <= 0:
        return []
    threads = thread_count()
    chunks = min(n_items, chunks if chunks is not None else threads * CHUNKS_PER_THREAD)
    # a chunk that hands out chunks of its own runs them itself: queued behind it, they could wait for ever
    nested = threading.current_thread().name.startswith(_THREAD_PREFIX)
    if threads == 1 or chunks <= 1 or nested:
        return [kernel(*args, 0, n_items)]
    bounds = [(n_items * k // chunks, n_items * (k + 1) // chunks) for k in range(chunks)]
    results: list = [None] * chunks
    errors: list = [None] * chunks
    taken = itertools.count()  # next() on it is atomic under the GIL: each chunk is taken once
    interrupted = threading.Event()

    def take_chunks():
        while not interrupted.is_set() and (k := next(taken)) < chunks:
            try:
                results[k] = kernel(*args, *bounds[k])
            except Exception as error:  # noqa: BLE001 - raised in the calling thread below
                errors[k] = error

    pool = _pool(threads)
    helpers = [pool.submit(take_chunks) for _ in range(threads - 1)]
    try:
        take_chunks()
    except BaseException:  # Ctrl-C in the calling thread: the other threads take no new chunk
        interrupted.set()
        raise
    for helper in helpers:
        helper.result()
    for error in errors:
        if error is not None:
            raise error
    return results


def _pool(threads: int) -> ThreadPoolExecutor:
    # per process: a pool inherited through fork has no threads behind it
    key = (os.getpid(), threads)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            # the calling thread is the other one
            pool = _pools[key] = ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix=_THREAD_PREFIX)
        return pool


def contiguous_copy(array: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``array`` (3-D or more), slices copied on `thread_count` threads.

    numpy copies on one thread, and most of a large copy's time here is the first touch of its new pages (the
    kernel maps and zeroes each one): handed out in slabs, the threads fault their pages in at once.
    """
    array = np.asarray(array)
    out = np.empty(array.shape, array.dtype)
    run_in_chunks(_copy_slices, array.shape[0], array, out)
    return out


def _copy_slices(src: np.ndarray, dst: np.ndarray, start: int, stop: int) -> None:
    np.copyto(dst[start:stop], src[start:stop])  # numpy lets go of the GIL while it copies
