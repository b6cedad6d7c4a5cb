"""ctbone.parallel: chunks of a range handed to threads, every item once, errors raised."""

import numba
import numpy as np
import pytest
from numba import njit

from ctbone.parallel import run_in_chunks


@njit(nogil=True)
def _mark(hits, start, stop):
    for i in range(start, stop):
        hits[i] += 1
    return stop - start


@pytest.fixture(params=[1, 2])
def threads(request):
    if request.param > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("needs 2 numba threads")
    before = numba.get_num_threads()
    numba.set_num_threads(request.param)
    yield request.param
    numba.set_num_threads(before)


@pytest.mark.parametrize("n_items, chunks", [(1, None), (7, None), (1000, None), (1000, 3), (5, 50)])
def test_every_item_once_in_chunk_order(threads, n_items, chunks):
    hits = np.zeros(n_items, np.int64)
    sizes = run_in_chunks(_mark, n_items, hits, chunks=chunks)
    assert np.all(hits == 1)  # none skipped, none twice (a chunk overlap or gap would show)
    assert sum(sizes) == n_items and all(s > 0 for s in sizes)  # no empty chunk handed out
    if threads == 1:
        assert sizes == [n_items]  # one thread: one call, no pool
    else:
        assert len(sizes) == min(n_items, chunks if chunks is not None else 4 * threads)


def test_nothing_to_do_calls_nothing():
    calls = []
    assert run_in_chunks(lambda a, b: calls.append((a, b)), 0) == []
    assert calls == []


def test_an_error_in_a_chunk_is_raised_after_all_chunks(threads):
    done = []

    def kernel(start, stop):
        if start == 0:
            raise ValueError("bad chunk")
        done.append((start, stop))

    with pytest.raises(ValueError, match="bad chunk"):
        run_in_chunks(kernel, 100, chunks=4)
    # the other chunks ran to their end before the error reached the caller
    assert len(done) == (3 if threads > 1 else 0)


def test_return_values_come_in_the_chunks_order(threads):
    starts = run_in_chunks(lambda start, stop: start, 1000, chunks=16)
    assert starts == sorted(starts) and starts[0] == 0 and len(set(starts)) == len(starts)


def test_contiguous_copy_of_a_strided_view(threads):
    from ctbone.parallel import contiguous_copy

    base = np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8)
    view = base[1:5, 2:6:2, ::-1]
    copy = contiguous_copy(view)
    assert copy.flags["C_CONTIGUOUS"] and copy.dtype == view.dtype
    assert np.array_equal(copy, view)
    copy[0, 0, 0] = -1
    assert view[0, 0, 0] != -1  # a copy, not the view


def test_chunks_that_hand_out_chunks_run_them_themselves(threads):
    # with every pool thread waiting on an inner call, queued inner chunks would never start
    def inner(hits, start, stop):
        hits[start:stop] += 1

    def outer(start, stop):
        hits = np.zeros(50, np.int64)
        run_in_chunks(inner, 50, hits)
        return int(hits.sum())

    assert run_in_chunks(outer, 8, chunks=8) == [50] * (8 if threads > 1 else 1)


def test_ctrl_c_in_the_calling_thread_stops_the_handing_out(threads):
    import threading
    import time

    done = []

    def kernel(start, stop):
        if threading.current_thread() is threading.main_thread():
            raise KeyboardInterrupt
        time.sleep(0.02)
        done.append(start)

    with pytest.raises(KeyboardInterrupt):
        run_in_chunks(kernel, 64, chunks=64)
    time.sleep(0.1)  # a helper finishes the chunk it holds, and takes no other
    assert len(done) <= 2 * (threads - 1)
