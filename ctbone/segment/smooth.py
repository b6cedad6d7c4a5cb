"""Gaussian smoothing before thresholding, as the field does it (Scanco IPL "sigma 0.8, support 1")."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


def gaussian_smooth(array: np.ndarray, *, sigma_vox: float = 0.8, support_vox: int = 1) -> np.ndarray:
    """Gaussian filter with a kernel truncated at ``support_vox`` voxels from its centre.

    Parameters
    ----------
    array : (Z, Y, X) ndarray
    sigma_vox : float, keyword-only
        Standard deviation in voxels (0 = no smoothing, a float32 copy).
    support_vox : int, keyword-only
        Kernel half-width in voxels (support 1 = a 3x3x3 kernel); at least 1.

    Returns
    -------
    (Z, Y, X) float32 ndarray
    """
    if sigma_vox <= 0:
        return np.array(array, np.float32)
    return gaussian_filter_nearest(array, sigma_vox, radius_vox=max(1, int(support_vox)))


def gaussian_filter_nearest(array: np.ndarray, sigma_vox: float, *, radius_vox: int | None = None) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter(array, sigma_vox, mode="nearest")`` on a 3D float32 array, same bits.

    The kernel is scipy's (radius ``int(4 sigma + 0.5)`` unless ``radius_vox``), applied axis by axis
    with the same float64 sums in the same order and float32 rounding between axes, so the result is
    bit-identical (tested); compiled and parallel over slices it is ~5x faster at 512^3 on 2 cores.
    A boolean or uint8 array is read as it is (as its float32 copy would be, without making it), and
    the passes along y and x run in place: one float32 volume is allocated, the result. A strided view (a
    block of the scan) is read in place too: faster than copying it out first (0.06 vs 0.03 + 0.07 s on 512 x
    340 x 460) and no block-sized copy.
    """
    array = np.asarray(array)
    if array.dtype == np.bool_:
        array = array.view(np.uint8)
    elif array.dtype not in (np.uint8, np.float32):
        array = array.astype(np.float32)
    half = gaussian_half_kernel(sigma_vox, radius_vox=radius_vox)
    out = np.empty(array.shape, np.float32)
    _correlate_z(array, out, half)
    _correlate_in_slices(out, half, 1)
    _correlate_in_slices(out, half, 2)
    return out


def gaussian_half_kernel(sigma_vox: float, *, radius_vox: int | None = None) -> np.ndarray:
    """scipy's normalised 1-D Gaussian kernel (radius ``int(4 sigma + 0.5)`` unless ``radius_vox``) from its
    centre out: the centre weight, then those 1 .. radius voxels away (float64)."""
    radius = int(4.0 * sigma_vox + 0.5) if radius_vox is None else int(radius_vox)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma_vox * sigma_vox) * x ** 2)
    phi = phi / phi.sum()
    return np.ascontiguousarray(phi[radius:])


# scipy's symmetric correlation: centre * w0, then (left + right) * w_k from the outermost k inwards,
# in float64; edges repeat the end value ("nearest"). Whole rows at a time, so the loops vectorise.

@njit(cache=True, parallel=True)
def _correlate_z(src, dst, half):  # pragma: no cover - compiled
    nz, ny, nx = src.shape
    r = half.size - 1
    for z in prange(nz):
        acc = np.empty(nx, np.float64)
        for y in range(ny):
            row = src[z, y]
            for x in range(nx):
                acc[x] = np.float64(row[x]) * half[0]
            for k in range(r, 0, -1):
                w = half[k]
                ra, rb = src[max(z - k, 0), y], src[min(z + k, nz - 1), y]
                for x in range(nx):
                    acc[x] += (np.float64(ra[x]) + np.float64(rb[x])) * w
            out = dst[z, y]
            for x in range(nx):
                out[x] = np.float32(acc[x])


@njit(cache=True, parallel=True)
def _correlate_in_slices(data, half, axis):  # pragma: no cover - compiled
    # along y (axis 1) or x (axis 2), in place: each slice's input is copied first (a slice, not a volume)
    nz, ny, nx = data.shape
    r = half.size - 1
    for z in prange(nz):
        plane = data[z].copy()
        acc = np.empty(nx, np.float64)
        for y in range(ny):
            row = plane[y]
            for x in range(nx):
                acc[x] = np.float64(row[x]) * half[0]
            for k in range(r, 0, -1):
                w = half[k]
                if axis == 2:
                    for x in range(nx):
                        a = row[max(x - k, 0)]
                        b = row[min(x + k, nx - 1)]
                        acc[x] += (np.float64(a) + np.float64(b)) * w
                else:
                    ra, rb = plane[max(y - k, 0)], plane[min(y + k, ny - 1)]
                    for x in range(nx):
                        acc[x] += (np.float64(ra[x]) + np.float64(rb[x])) * w
            out = data[z, y]
            for x in range(nx):
                out[x] = np.float32(acc[x])
