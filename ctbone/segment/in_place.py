"""A scan's block of rows and columns made in the scan's own memory, which then shrinks to it.

Cutting the bone's block out of a scan handed over (no one else holds it) by a copy held the scan and the copy
at once: 1.6x the scan's float32 size at 512^3, where the bone's block is 57 % of each slice. Moved to the front of
the scan's own buffer and the buffer shrunk (``realloc``), the block costs no memory beside the scan, and the rest
of the buffer is free for what follows.
"""

from __future__ import annotations

import sys
import weakref

import numpy as np


def _references_in_a_call(array: np.ndarray) -> int:
    return sys.getrefcount(array)


def _references_when_alone() -> int:
    array = np.empty(1)
    return _references_in_a_call(array)


# what getrefcount says inside `shrink_to_block` of an array that only its caller's name holds (3 on CPython 3.11:
# that name, the parameter, getrefcount's argument), measured rather than assumed: interpreters count differently
_REFERENCES_WHEN_ALONE = _references_when_alone()


def shrink_to_block(array: np.ndarray, box) -> bool:
    """Make ``array`` (Z, Y, X) its own ``array[box]``, in place, if nothing else holds it; else leave it.

    ``box``: (slices, rows, columns) slices with step 1, the slices all of them. True when done: ``array`` is
    then the compact block (the same Python object, reshaped); False (untouched) when the array is not its own
    memory, not C-contiguous, or has other references (a view of it, a caller's variable, a weak reference): a
    copy is needed.
    """
    zs, ys, xs = (s.indices(n) for s, n in zip(box, array.shape))
    if zs[:2] != (0, array.shape[0]) or any(s[2] != 1 for s in (zs, ys, xs)):
        raise ValueError(f"shrink_to_block needs all slices and slices of step 1, got {box}")
    if not (array.flags.owndata and array.flags.c_contiguous and array.flags.writeable):
        return False
    if sys.getrefcount(array) > _REFERENCES_WHEN_ALONE or weakref.getweakrefcount(array):
        return False  # numpy does not resize an array with weak references either
    nz = array.shape[0]
    by, bx = ys[1] - ys[0], xs[1] - xs[0]
    rows, cols = slice(ys[0], ys[1]), slice(xs[0], xs[1])
    flat = array.reshape(-1)
    # element by element in raster order, each lands at or before where it was and before every element
    # still to move: slice by slice (numpy copes with a slice's overlap with its own new place)
    for z in range(nz):
        np.copyto(flat[z * by * bx:(z + 1) * by * bx].reshape(by, bx), array[z, rows, cols])
    del flat
    array.resize((nz, by, bx), refcheck=False)  # realloc: the buffer's tail goes back to the allocator
    return True
