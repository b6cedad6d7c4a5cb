"""Standard views of a long bone, from its principal axes, so every animal is framed alike.

The scanner does not record which side of a limb is anterior, so view names are
a convention on the bone's own axes (docs/rendering.md):

* e1, the long axis (largest spread), points to the larger end (the knee end of a
  mouse tibia or femur) and is drawn left → right;
* e2, the wider cross-sectional axis, is signed to point along +x of the scan
  (or +y when it is nearly perpendicular to x);
* e3 = e1 × e2.

"anterior" looks at the bone from +e3, "posterior" from −e3, "lateral" from +e2,
"medial" from −e2, "oblique" from between +e3 and +e2, 20° above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import RenderError

VIEWS = ("oblique", "anterior", "posterior", "medial", "lateral")
PANEL_VIEWS = ("anterior", "lateral", "posterior", "medial")
OBLIQUE_ELEVATION_DEG = 20.0
# fraction of the long axis at each end compared to pick the larger (knee) end
END_FRACTION = 0.15
MAX_PCA_POINTS = 300_000


@dataclass(frozen=True)
class BoneFrame:
    """Principal frame of a bone, local mm coordinates (x, y, z)."""

    center: np.ndarray   # centre of the bounding box in the principal frame
    axes: np.ndarray     # rows e1, e2, e3
    extent_mm: np.ndarray  # length of the bone along e1, e2, e3


@dataclass(frozen=True)
class Camera:
    position: np.ndarray
    focal_point: np.ndarray
    view_up: np.ndarray
    parallel_scale_mm: float  # half the visible height


def bone_frame(mask: np.ndarray, spacing_zyx) -> BoneFrame:
    """Principal axes and extents of the voxels of ``mask`` (z, y, x) with deterministic signs."""
    # a regular sub-grid is as good as every voxel for second moments, and argwhere on 10^8 voxels is slow
    stride = max(1, int(np.ceil((mask.size / (8 * MAX_PCA_POINTS)) ** (1 / 3))))
    idx = np.argwhere(mask[::stride, ::stride, ::stride]) * stride
    if len(idx) < 4:
        raise RenderError("nothing to render: the bone mask is empty")
    pts = idx[:, ::-1] * np.asarray(spacing_zyx, dtype=float)[::-1]  # local x, y, z mm
    mean = pts.mean(axis=0)
    centred = pts - mean
    _, vectors = np.linalg.eigh(np.cov(centred.T))
    e1, e2 = vectors[:, 2].copy(), vectors[:, 1].copy()

    along = centred @ e1
    lo, hi = np.quantile(along, [END_FRACTION, 1 - END_FRACTION])
    low_end, high_end = np.count_nonzero(along <= lo), np.count_nonzero(along >= hi)
    # quantiles make both ends hold the same count; compare the spread across the axis instead
    width_low = np.ptp(centred[along <= lo] @ e2) if low_end else 0.0
    width_high = np.ptp(centred[along >= hi] @ e2) if high_end else 0.0
    if abs(width_high - width_low) > 0.05 * max(width_high, width_low, 1e-9):
        if width_low > width_high:
            e1 = -e1
    elif e1[2] < 0:
        e1 = -e1
    ref = 0 if abs(e2[0]) >= 0.1 else 1
    if e2[ref] < 0:
        e2 = -e2
    e3 = np.cross(e1, e2)
    axes = np.stack([e1, e2, e3])
    proj = centred @ axes.T
    lo3, hi3 = proj.min(axis=0), proj.max(axis=0)
    voxel = float(np.max(spacing_zyx))
    centre = mean + axes.T @ ((lo3 + hi3) / 2)
    return BoneFrame(center=centre, axes=axes, extent_mm=(hi3 - lo3) + voxel)


def view_direction(view: str, frame: BoneFrame) -> np.ndarray:
    """Unit vector from the focal point towards the camera."""
    e1, e2, e3 = frame.axes
    if view == "anterior":
        return e3
    if view == "posterior":
        return -e3
    if view == "lateral":
        return e2
    if view == "medial":
        return -e2
    if view == "oblique":  # half-way from anterior towards lateral, raised
        return turntable_direction(frame, 45.0, OBLIQUE_ELEVATION_DEG)
    raise RenderError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)} or 'panel'")


def turntable_direction(frame: BoneFrame, angle_deg: float, elevation_deg: float = 15.0) -> np.ndarray:
    """Camera direction after turning ``angle_deg`` about the long axis from the anterior view."""
    _, e2, e3 = frame.axes
    a, el = np.radians(angle_deg), np.radians(elevation_deg)
    around = np.cos(a) * e3 + np.sin(a) * e2
    up = np.cross(around, frame.axes[0])
    return np.cos(el) * around + np.sin(el) * up


def needed_field(frame: BoneFrame, directions, aspect: float, margin: float = 1.08) -> float:
    """Half visible height (mm) that fits the bone seen from every one of ``directions`` (view names or
    unit vectors towards the camera) at width/height ``aspect``."""
    e1 = frame.axes[0]
    half = 0.0
    for view in directions:
        d = view_direction(view, frame) if isinstance(view, str) else np.asarray(view, dtype=float)
        up = np.cross(d, e1)
        up /= np.linalg.norm(up)
        right = np.cross(-d, up)
        # half extent of the bounding box projected on screen axes
        corners = np.abs(frame.axes @ right) @ frame.extent_mm / 2, np.abs(frame.axes @ up) @ frame.extent_mm / 2
        half = max(half, corners[0] / aspect, corners[1])
    return half * margin


def camera_for(view, frame: BoneFrame, parallel_scale_mm: float) -> Camera:
    """Parallel-projection camera looking at the bone from ``view`` (a name or a unit vector towards
    the camera), long axis left → right."""
    d = view_direction(view, frame) if isinstance(view, str) else np.asarray(view, dtype=float)
    e1 = frame.axes[0]
    up = np.cross(d, e1)
    up /= np.linalg.norm(up)
    distance = 4.0 * float(np.max(frame.extent_mm)) + 1.0
    return Camera(position=frame.center + distance * d, focal_point=frame.center.copy(), view_up=up,
                  parallel_scale_mm=float(parallel_scale_mm))
