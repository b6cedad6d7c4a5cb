"""Cortical openings measured on the intact periosteal surface.

The intact periosteal surface is sampled exactly (points on the analytic
ellipse of every fine z slice, uniform in the ellipse parameter), each sample
weighted by its true surface-area element, so an opening's area is a surface
integral, not πr² (which ignores the curvature and obliquity of the surface).
Openings are connected patches of removed surface; an opening counts as a
cortical defect when one of its lesions also reaches the endosteal surface,
i.e. passes through the whole cortex.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .geometry import Lesion, inner_axes_mm, lytic_region, outer_axes_mm
from .spec import PhantomSpec


def _area_elements(spec: PhantomSpec, z, t, dz, dt):
    """|X_z × X_t| dz dt for X(z, t) = (a(z) cos t, b(z) sin t, z): exact, taper included."""
    a, b = outer_axes_mm(spec, z)
    eps = 1e-5
    a1, b1 = outer_axes_mm(spec, z + eps)
    a0, b0 = outer_axes_mm(spec, z - eps)
    da, db = (a1 - a0) / (2 * eps), (b1 - b0) / (2 * eps)
    a, b, da, db = (v[:, None] for v in (a, b, da, db))
    c, s = np.cos(t)[None, :], np.sin(t)[None, :]
    normal_z = da * b * c * c + a * db * s * s
    return np.sqrt((b * c) ** 2 + (a * s) ** 2 + normal_z ** 2) * dz * dt


def _merge_seam(labels: np.ndarray) -> np.ndarray:
    """Join components that meet across t = 0 / 2π (the parameter is periodic)."""
    n = int(labels.max())
    parent = np.arange(n + 1)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first, last = labels[:, 0], labels[:, -1]
    for shift in (-1, 0, 1):
        lo, hi = max(0, -shift), len(first) - max(0, shift)
        for u, v in zip(first[lo:hi], last[lo + shift:hi + shift]):
            if u and v:
                ru, rv = find(u), find(v)
                if ru != rv:
                    parent[max(ru, rv)] = min(ru, rv)
    roots = np.array([find(i) for i in range(n + 1)])
    _, compact = np.unique(roots, return_inverse=True)
    return compact[labels]


def periosteal_openings(spec: PhantomSpec, lesions: list[Lesion], z_fine_mm: np.ndarray):
    """Openings of the lytic lesions on the intact periosteal surface.

    Parameters
    ----------
    spec : PhantomSpec
    lesions : list of Lesion (resolved)
    z_fine_mm : (n,) float
        Centres of the fine z slices covering the scan (spacing: slice spacing / supersample).

    Returns
    -------
    openings : list of dict
        One per connected opening: lesion indices, through (bool), area_mm2 and the
        area-weighted centroid (x, y, z mm, right-limb frame).
    per_lesion : dict
        lesion index -> {"outer_area_mm2", "through"}.
    surface_mm2 : float
        Area of the whole intact periosteal surface over the scan.
    """
    dz = spec.z_spacing_mm / spec.supersample
    a_max = float(np.max(outer_axes_mm(spec, z_fine_mm)[0]))
    n_t = int(np.ceil(2 * np.pi * a_max / dz * 2 / 64.0)) * 64  # ~2 samples per fine voxel along the perimeter
    dt = 2 * np.pi / n_t
    t = (np.arange(n_t) + 0.5) * dt
    area = _area_elements(spec, z_fine_mm, t, dz, dt)
    surface_mm2 = float(area.sum())

    union = np.zeros(area.shape, bool)
    masks, per_lesion = {}, {}
    for les in lesions:
        if not les.is_lytic:
            continue
        rows = np.flatnonzero((z_fine_mm >= les.z_min_mm - dz) & (z_fine_mm <= les.z_max_mm + dz))
        if len(rows) == 0:
            per_lesion[les.index] = {"outer_area_mm2": 0.0, "through": False}
            continue
        z = z_fine_mm[rows][:, None]
        a, b = (v[:, None] for v in outer_axes_mm(spec, z_fine_mm[rows]))
        outer = lytic_region(les, a * np.cos(t), b * np.sin(t), z)
        ai, bi = (v[:, None] for v in inner_axes_mm(spec, z_fine_mm[rows]))
        inner = lytic_region(les, ai * np.cos(t), bi * np.sin(t), z)
        # an inner-surface hit alone is not enough: the outer surface must be opened too
        per_lesion[les.index] = {
            "outer_area_mm2": float(area[rows][outer].sum()),
            "inner_hit": bool(inner.any()),
            "through": bool(outer.any() and inner.any()),
        }
        masks[les.index] = (rows, outer)
        union[rows] |= outer

    openings = []
    if union.any():
        labels, _ = ndimage.label(union, structure=np.ones((3, 3), bool))
        labels = _merge_seam(labels)
        zz = np.broadcast_to(z_fine_mm[:, None], area.shape)
        a, b = outer_axes_mm(spec, z_fine_mm)
        xx, yy = a[:, None] * np.cos(t)[None, :], b[:, None] * np.sin(t)[None, :]
        idx = np.arange(1, labels.max() + 1)
        areas = ndimage.sum(area, labels, idx)
        cx = ndimage.sum(area * xx, labels, idx) / areas
        cy = ndimage.sum(area * yy, labels, idx) / areas
        cz = ndimage.sum(area * zz, labels, idx) / areas
        for n, lab in enumerate(idx):
            members = sorted(i for i, (rows, m) in masks.items() if np.any(labels[rows][m] == lab))
            openings.append({
                "lesions": members,
                "through": any(per_lesion[i]["through"] for i in members),
                "area_mm2": float(areas[n]),
                "centroid_mm": (float(cx[n]), float(cy[n]), float(cz[n])),
            })
    for info in per_lesion.values():
        info.pop("inner_hit", None)
    return openings, per_lesion, surface_mm2
