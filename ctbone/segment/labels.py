"""Connected components on a mask's bounding box, and voxel counts of a label image without numpy's int64 copy."""

from __future__ import annotations

import numpy as np
from numba import njit


def label_on_box(mask: np.ndarray, *, connectivity: int = 26):
    """(labels on the box, n, box) of ``mask``'s components (cc3d), labelled on its bounding box only;
    (None, 0, None) for an empty mask.

    The labels are those of the whole array (cc3d numbers components in raster order of their first voxel,
    which a box keeps), without a label volume of the empty margins around the mask.
    """
    import cc3d

    from ..volume import bounding_box

    box = bounding_box(mask)
    if box is None:
        return None, 0, None
    part = np.ascontiguousarray(mask[box], dtype=bool).view(np.uint8)
    labels, n = cc3d.connected_components(part, connectivity=connectivity, return_N=True)
    return labels, int(n), box


def label_counts(labels: np.ndarray, n: int | None = None) -> np.ndarray:
    """``np.bincount(labels.ravel())`` (int64, length max label + 1, or ``n + 1`` when given), in one
    compiled pass: bincount first casts the labels to int64 (1 GB for a 512³ uint32 label image)."""
    labels = np.ascontiguousarray(labels)
    if labels.dtype.kind not in "ub":
        raise TypeError(f"label_counts needs unsigned integer labels, got {labels.dtype}")
    if n is None:
        n = int(labels.max()) if labels.size else 0
    return _counts(labels.reshape(-1), int(n) + 1)


@njit(cache=True)
def _counts(flat, size):  # pragma: no cover - compiled
    counts = np.zeros(size, np.int64)
    for value in flat:
        if value >= size:
            raise ValueError("a label is larger than n")
        counts[value] += 1
    return counts
