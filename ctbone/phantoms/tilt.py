"""A phantom scan with its shaft leaning from the slice axis, as real bones lie in the holder."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..volume import Volume


def tilted(volume: Volume, degrees: float) -> Volume:
    """``volume`` turned by ``degrees`` about x (the shaft leans in the y-z plane), linear interpolation, cut
    back to the slices that the turned scan covers whole.

    A real scan's first and last slices cut a leaning shaft straight across; the turned box's own end faces
    would cut it obliquely, a half-ring that reads as missing cortex, so the slices those faces cross
    (``ny sin(degrees)`` of them at each end, plus 2) are dropped. The corners the turn brings in take the
    value of the scan's corner (the surrounding tissue). Lesion volumes and areas keep their true values;
    the truth of the scan's extent (BV, TV) does not hold any more.
    """
    background = float(np.median(volume.array[:, :3, :3]))
    array = ndimage.rotate(volume.array, degrees, axes=(0, 1), reshape=True, order=1, mode="constant",
                           cval=background)
    ends = int(np.ceil(volume.shape[1] * np.sin(np.radians(abs(degrees))))) + 2
    if array.shape[0] <= 2 * ends:
        raise ValueError(f"a {volume.shape[0]}-slice scan turned by {degrees} degrees keeps no whole slice")
    return Volume(np.ascontiguousarray(array[ends:array.shape[0] - ends], np.float32), spacing=volume.spacing,
                  unit=volume.unit, meta=dict(volume.meta))
