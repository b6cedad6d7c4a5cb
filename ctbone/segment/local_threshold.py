"""Trabecular threshold: half-way to each structure's own peak, not to the cortex's.

A global threshold half-way between marrow and *cortical* bone is right for the cortex
but wrong for trabeculae a few voxels across: blur (scanner and smoothing) lowers their
peak far below the cortical level, so the global threshold keeps only their cores or
drops them (a 2.5-voxel rod peaks near 60 % of the contrast and loses about half of its
voxels). The local adaptive threshold of Waarsing, Day & Weinans (JBMR 2004;19:1640)
instead compares each voxel with the brightest voxel near it: a voxel is bone when it is
above the mean of the background level and that local maximum, so each structure is cut
at its own half maximum, which sits near its true edge.

Guards, so that the local threshold only ever *adds* partial-volume edges of real
structures:

* ceiling: never above the global threshold (what the global threshold calls bone stays);
* floor: never below ``background + FLOOR_FRACTION * (global - background)`` nor below
  ``background + FLOOR_NOISE_SD`` noise standard deviations, so marrow noise (whose local
  maxima are a few SD up) is never promoted to bone.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy import ndimage

from ..parallel import run_in_chunks
from ..volume import bounding_box

# the neighbourhood searched for each voxel's peak: edge voxels of a thin structure lie within
# about its radius plus the blur of its ridge; 2 voxels covers structures up to ~5 voxels across,
# and thicker ones are already right under the global threshold
LOCAL_RADIUS_VOX = 2
FLOOR_FRACTION = 0.3
FLOOR_NOISE_SD = 6.0


def background_level(values: np.ndarray, where: np.ndarray | None = None) -> tuple[float, float]:
    """(mode, noise SD) of a marrow-dominated sample: the histogram peak and the spread below it.

    Only values below the mode estimate the SD (a half-normal), so bone in the sample does not
    widen it. The sample is ``values``, or ``values[where]`` (a bool mask of its shape): that one is
    gathered once and its copy reordered by the percentiles (numpy's own copy of it was the segment
    stage's memory peak), and the values below the mode are gathered again in their order.
    """
    values = np.asarray(values, np.float32)
    sample = values if where is None else values[where]
    lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5], overwrite_input=where is not None))
    if hi <= lo:
        return lo, 0.0
    hist, edges = np.histogram(sample, bins=256, range=(lo, hi))  # counts: in any order
    del sample
    level = ndimage.gaussian_filter1d(hist.astype(float), 2.0)
    k = int(np.argmax(level))
    mode = float((edges[k] + edges[k + 1]) / 2)
    keep = values < mode
    if where is not None:
        keep &= where
    below = values[keep]  # in the sample's order: the mean below sums them in it
    del keep
    below -= mode
    sd = float(np.sqrt(np.mean(below.astype(np.float64) ** 2))) if below.size else 0.0
    return mode, sd


def local_half_max_mask(image: np.ndarray, region: np.ndarray, *, global_threshold: float,
                        radius_vox: int = LOCAL_RADIUS_VOX) -> tuple[np.ndarray, dict]:
    """Bone in ``region`` by the local adaptive half-maximum threshold (see the module docs).

    Parameters
    ----------
    image : ndarray, float, or callable
        Smoothed image, or a function that makes its values on a box (a tuple of slices) as a float32 array:
        only the region's box is read.
    region : ndarray, bool
        Where to apply it (the marrow compartment, or the whole trabecular cube).
    global_threshold : float
        The scan's bone threshold (the ceiling), in the image unit.
    radius_vox : int
        Half-width of the cubic neighbourhood searched for each voxel's peak.

    Returns
    -------
    mask : ndarray, bool
        ``region & (image > local threshold)``; contains ``region & (image > global_threshold)``.
    facts : dict
        ``background``, ``noise_sd``, ``floor`` (image unit), for metrics.json.
    """
    region = np.asarray(region, bool)
    if not region.any():
        return np.zeros(region.shape, bool), {}
    box = bounding_box(region, margin_vox=radius_vox)
    sub = np.ascontiguousarray(image(box) if callable(image) else image[box], np.float32)
    in_box = np.ascontiguousarray(region[box])
    # the region lies in its box: its values there come in the whole array's order
    background, noise_sd = background_level(sub, in_box)
    floor = background + max(FLOOR_FRACTION * (global_threshold - background), FLOOR_NOISE_SD * noise_sd)
    floor = min(floor, global_threshold)
    mask = np.zeros(region.shape, bool)
    above = np.zeros(sub.shape, bool)
    run_in_chunks(_above_local_half_max, sub.shape[0], sub, in_box, int(radius_vox),
                  np.float32(background), np.float32(floor), np.float32(global_threshold), above)
    mask[box] = above
    facts = {"method": "local-half-max", "background": background, "noise_sd": noise_sd, "floor": float(floor),
             "radius_vox": int(radius_vox)}
    return mask, facts


@njit(cache=True, nogil=True)
def _above_local_half_max(sub, region, radius, background, floor, ceiling, out, z0, z1):  # pragma: no cover
    # region & (sub > clip((max over the (2r+1)^3 cube, edges clamped + background) / 2, floor, ceiling)),
    # in float32 as numpy would; the peak is searched only where it decides: a voxel at or below the
    # floor never passes, one above the ceiling always does (the partial-volume edges are few)
    nz, ny, nx = sub.shape
    half = np.float32(0.5)
    for z in range(z0, z1):
        for y in range(ny):
            for x in range(nx):
                v = sub[z, y, x]
                if not region[z, y, x] or v <= floor:
                    continue
                if v > ceiling:
                    out[z, y, x] = True
                    continue
                peak = v
                for zz in range(max(z - radius, 0), min(z + radius + 1, nz)):
                    for yy in range(max(y - radius, 0), min(y + radius + 1, ny)):
                        for xx in range(max(x - radius, 0), min(x + radius + 1, nx)):
                            peak = max(peak, sub[zz, yy, xx])
                local = (peak + background) * half
                local = min(max(local, floor), ceiling)
                out[z, y, x] = v > local
