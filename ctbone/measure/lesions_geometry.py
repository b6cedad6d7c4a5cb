"""Small geometric measures for lesions: surface patches, Feret diameter, components."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

# faces whose normal is this close to the z axis belong to the cut ends of the shaft, not the periosteum
_END_CAP_NZ = 0.9


def surface_normals(inside: np.ndarray, *, spacing_mm, sigma_vox: float = 1.5) -> np.ndarray:
    """Unit outward normals (3, Z, Y, X) of a mask's smoothed indicator, in (z, y, x) order."""
    smooth = ndimage.gaussian_filter(inside.astype(np.float32), sigma=sigma_vox, mode="nearest")
    grads = np.stack([-g / s for g, s in zip(np.gradient(smooth), spacing_mm)])
    norm = np.sqrt((grads ** 2).sum(axis=0))
    return grads / np.maximum(norm, 1e-12)


def surface_area_mm2(inside: np.ndarray, patch: np.ndarray, *, spacing_mm, normals: np.ndarray) -> float:
    """Area of the boundary of ``inside`` on faces of ``patch`` voxels, mm².

    Each face between an inside ``patch`` voxel and an outside voxel counts its face area times
    |n_k| (n = surface normal, k = the face's axis): summed over a surface, Σ|n_k|·|n_k|·A = A, so
    the staircase over-count of oblique surfaces (up to √3) cancels.
    """
    sz, sy, sx = spacing_mm
    face_area = (sy * sx, sz * sx, sz * sy)
    total = 0.0
    src = inside & patch
    for axis in range(3):
        for shift in (1, -1):
            neighbour_out = ~np.roll(inside, -shift, axis=axis)
            edge = [slice(None)] * 3
            edge[axis] = slice(-1, None) if shift == 1 else slice(0, 1)
            neighbour_out[tuple(edge)] = False  # array border: not a surface of the bone
            faces = src & neighbour_out
            if not faces.any():
                continue
            n = normals[:, faces]
            keep = np.abs(n[0]) < _END_CAP_NZ
            total += face_area[axis] * float(np.abs(n[axis][keep]).sum())
    return total


def max_diameter_mm(points_zyx: np.ndarray, *, spacing_mm) -> float:
    """Largest distance between voxel centres (Feret) plus one voxel, mm."""
    if len(points_zyx) == 0:
        return 0.0
    pts = points_zyx * np.asarray(spacing_mm, dtype=float)
    if len(pts) > 4:
        try:
            pts = pts[ConvexHull(pts).vertices]
        except (QhullError, ValueError):
            pass  # flat or degenerate set: use all points
    if len(pts) > 3000:
        pts = pts[:: len(pts) // 3000 + 1]
    d2 = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(axis=-1)
    return float(np.sqrt(d2.max()) + float(np.mean(spacing_mm)))


def components(mask: np.ndarray, *, connectivity: int = 26):
    """(labels, n) of a boolean mask (cc3d, 26- or 6-connected)."""
    import cc3d

    labels, n = cc3d.connected_components(mask.astype(np.uint8), connectivity=connectivity, return_N=True)
    return labels, int(n)


def keep_large(mask: np.ndarray, *, min_voxels: float, connectivity: int = 26) -> np.ndarray:
    """Components of ``mask`` with at least ``min_voxels`` voxels."""
    labels, n = components(mask, connectivity=connectivity)
    if n == 0:
        return np.zeros(mask.shape, bool)
    sizes = np.bincount(labels.ravel())
    good = sizes >= min_voxels
    good[0] = False
    return good[labels]


def touching(labels: np.ndarray, n: int, region: np.ndarray) -> np.ndarray:
    """Boolean (n + 1,) : label i has a voxel in or face-adjacent to ``region``."""
    near = ndimage.binary_dilation(region)
    hit = np.zeros(n + 1, bool)
    hit[np.unique(labels[near & (labels > 0)])] = True
    hit[0] = False
    return hit
