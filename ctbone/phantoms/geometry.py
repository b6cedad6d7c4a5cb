"""Analytic geometry of the phantom bone, in the right-limb frame (mm).

Everything here is a pure function of the spec and of coordinates, so the
same shapes are evaluated on the fine voxel grid (volumes), on samples of the
periosteal surface (defect areas) and in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from .spec import LYTIC_KINDS, PhantomSpec


def _smoothstep(u):
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def outer_axes_mm(spec: PhantomSpec, z_mm):
    """Periosteal semi-axes (a along x, b along y) at ``z_mm`` (array-friendly)."""
    z = np.asarray(z_mm, dtype=float)
    scale = 1.0 + spec.taper_pct / 100.0 * (0.5 - z / spec.length_mm)
    if spec.metaphysis_length_mm > 0:
        scale = scale * (1.0 + spec.metaphysis_flare_pct / 100.0 * (1.0 - _smoothstep(z / spec.metaphysis_length_mm)))
    return spec.outer_a_mm * scale, spec.outer_b_mm * scale


def cortical_thickness_at_mm(spec: PhantomSpec, z_mm):
    """Nominal cortical thickness (outer minus inner semi-axis) at ``z_mm``."""
    z = np.asarray(z_mm, dtype=float)
    if spec.metaphysis_length_mm <= 0:
        return np.full(z.shape, spec.cortical_thickness_mm) if z.ndim else float(spec.cortical_thickness_mm)
    t0, t1 = spec.metaphysis_cortical_thickness_mm, spec.cortical_thickness_mm
    return t0 + (t1 - t0) * _smoothstep(z / spec.metaphysis_length_mm)


def inner_axes_mm(spec: PhantomSpec, z_mm):
    """Endosteal (marrow cavity) semi-axes at ``z_mm``."""
    a, b = outer_axes_mm(spec, z_mm)
    t = cortical_thickness_at_mm(spec, z_mm)
    return a - t, b - t


def ellipse_radius(a, b, angle_rad):
    """Distance from the centre to an ellipse (a, b) along the direction ``angle_rad``."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return 1.0 / np.sqrt((c / a) ** 2 + (s / b) ** 2)


# -- lesions ------------------------------------------------------------------
@dataclass(frozen=True)
class Lesion:
    """A lesion with every parameter resolved (depths, lengths) and its z range of influence."""

    index: int
    kind: str
    params: dict
    z_min_mm: float
    z_max_mm: float

    @property
    def is_lytic(self) -> bool:
        return self.kind in LYTIC_KINDS


def resolve_lesions(spec: PhantomSpec) -> list[Lesion]:
    """Fill derived parameters (cavity depth, half-lengths, woven HU) and z extents."""
    out = []
    for i, les in enumerate(spec.lesions):
        p = dict(les)
        z, theta = p["z_mm"], np.deg2rad(p["angle_deg"])
        a, b = outer_axes_mm(spec, z)
        ai, bi = inner_axes_mm(spec, z)
        p["angle_rad"] = float(theta)
        if p["kind"] == "perforation":
            # start half-way between the axis and the endosteum: the drill crosses one cortex only
            p["start_mm"] = 0.5 * float(ellipse_radius(ai, bi, theta))
            half = p["radius_mm"]
        elif p["kind"] == "lytic_cavity":
            if p["depth_mm"] is None:
                p["depth_mm"] = float(ellipse_radius(a, b, theta) - ellipse_radius(ai, bi, theta))
            if p["half_length_mm"] is None:
                p["half_length_mm"] = p["radius_mm"]
            r_c = float(ellipse_radius(a, b, theta)) - p["depth_mm"]
            p["centre_mm"] = (r_c * np.cos(theta), r_c * np.sin(theta), z)
            half = p["half_length_mm"]
        else:  # blastic
            if p["hu"] is None:
                p["hu"] = spec.woven_hu
            half = p["half_length_mm"]
            rng = np.random.default_rng([spec.geometry_seed, 7919, i])
            # a band-limited random field: a sum of plane waves of one wavelength, random directions
            n_waves = 12
            directions = rng.normal(size=(n_waves, 3))
            directions /= np.linalg.norm(directions, axis=1, keepdims=True)
            p["waves"] = directions * (2 * np.pi / p["pore_mm"])
            p["phases"] = rng.uniform(0, 2 * np.pi, n_waves)
            # the field is ~Gaussian with variance n/2: this level leaves `porosity` of the cap as pores
            p["level"] = float(np.sqrt(n_waves / 2.0) * ndtri(p["porosity"])) if p["porosity"] > 0 else -np.inf
        out.append(Lesion(i, p["kind"], p, z - half, z + half))
    return out


def lytic_region(lesion: Lesion, x, y, z):
    """Boolean: points (broadcastable arrays, mm) inside a perforation / cavity."""
    p = lesion.params
    if lesion.kind == "perforation":
        c, s = np.cos(p["angle_rad"]), np.sin(p["angle_rad"])
        along = x * c + y * s
        across2 = (x * s - y * c) ** 2 + (z - p["z_mm"]) ** 2
        return (along >= p["start_mm"]) & (across2 <= p["radius_mm"] ** 2)
    cx, cy, cz = p["centre_mm"]
    return ((x - cx) ** 2 + (y - cy) ** 2) / p["radius_mm"] ** 2 + ((z - cz) / p["half_length_mm"]) ** 2 <= 1.0


def blastic_region(spec: PhantomSpec, lesion: Lesion, x, y, z, a, b):
    """Boolean: woven bone of a blastic cap at points (x, y, z); ``a``, ``b`` = outer axes at z.

    The cap lies outside the periosteal ellipse and inside the ellipse grown by the
    local cap height h = thickness * sqrt(1 - u²), u² = (Δangle / half extent)² + (Δz / half length)²
    (a dome); pores are where a band-limited random field falls below a level.
    """
    p = lesion.params
    shape = np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z), np.shape(a))
    # the cap only exists outside the periosteal ellipse and within thickness_mm of it
    r2_out = (x / a) ** 2 + (y / b) ** 2
    near = (r2_out > 1.0) & ((x / (a + p["thickness_mm"])) ** 2 + (y / (b + p["thickness_mm"])) ** 2 <= 1.0)
    idx = np.nonzero(np.broadcast_to(near, shape))
    px, py, pz = (np.broadcast_to(v, shape)[idx] for v in (x, y, z))
    pa, pb = np.broadcast_to(a, shape)[idx], np.broadcast_to(b, shape)[idx]
    dtheta = np.angle(np.exp(1j * (np.arctan2(py, px) - p["angle_rad"])))
    u2 = (dtheta / np.deg2rad(p["extent_deg"] / 2.0)) ** 2 + ((pz - p["z_mm"]) / p["half_length_mm"]) ** 2
    h = p["thickness_mm"] * np.sqrt(np.clip(1.0 - u2, 0.0, None))
    keep = (h > 0) & ((px / (pa + h)) ** 2 + (py / (pb + h)) ** 2 <= 1.0)
    if np.isfinite(p["level"]):
        field = np.zeros(px.shape)
        for (kx, ky, kz), phase in zip(p["waves"], p["phases"]):
            field += np.cos(kx * px + ky * py + kz * pz + phase)
        keep &= field >= p["level"]
    out = np.zeros(shape, bool)
    out[tuple(i[keep] for i in idx)] = True
    return out


def bone_extent_mm(spec: PhantomSpec, z_mm) -> tuple[float, float]:
    """Largest |x| and |y| (mm) of bone over the slices ``z_mm``, blastic caps included."""
    z_mm = np.asarray(z_mm, dtype=float)
    a, b = outer_axes_mm(spec, z_mm)
    ext_x, ext_y = float(a.max()), float(b.max())
    for les in spec.lesions:
        if les["kind"] != "blastic":
            continue
        near = np.abs(z_mm - les["z_mm"]) <= les["half_length_mm"]
        if near.any():
            ext_x = max(ext_x, float(a[near].max()) + les["thickness_mm"])
            ext_y = max(ext_y, float(b[near].max()) + les["thickness_mm"])
    return ext_x, ext_y


# -- trabecular rods ------------------------------------------------------------
@dataclass(frozen=True)
class Rods:
    """Straight rods (segments) of one radius: ``starts``/``ends`` (n, 3) as (x, y, z) mm."""

    starts: np.ndarray
    ends: np.ndarray
    radius_mm: float

    @property
    def z_lo(self):
        return np.minimum(self.starts[:, 2], self.ends[:, 2]) - self.radius_mm

    @property
    def z_hi(self):
        return np.maximum(self.starts[:, 2], self.ends[:, 2]) + self.radius_mm


def trabecular_rods(spec: PhantomSpec) -> Rods:
    """Rods joining neighbours of a jittered cubic lattice filling the metaphysis (clip to the marrow later)."""
    empty = Rods(np.zeros((0, 3)), np.zeros((0, 3)), spec.tb_rod_diameter_mm / 2)
    if spec.metaphysis_length_mm <= 0:
        return empty
    rng = np.random.default_rng([spec.geometry_seed, 104729])
    step = spec.tb_spacing_mm
    a0, b0 = inner_axes_mm(spec, 0.0)
    # nodes cover the marrow of the metaphysis, one step beyond it so rods reach the endosteum
    xs = np.arange(-a0 - step, a0 + step + 1e-9, step)
    ys = np.arange(-b0 - step, b0 + step + 1e-9, step)
    zs = np.arange(-step, 0.85 * spec.metaphysis_length_mm + 1e-9, step)
    grid = np.stack(np.meshgrid(xs, ys, zs, indexing="ij"), axis=-1)
    grid = grid + rng.uniform(-0.3, 0.3, grid.shape) * step
    starts, ends = [], []
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        s, e = grid[tuple(lo)].reshape(-1, 3), grid[tuple(hi)].reshape(-1, 3)
        keep = rng.uniform(size=len(s)) < spec.tb_keep_fraction
        starts.append(s[keep])
        ends.append(e[keep])
    starts, ends = np.concatenate(starts), np.concatenate(ends)
    # only rods with a point in the marrow at some z matter; drop those wholly outside the flared bone
    mid = (starts + ends) / 2
    ai, bi = inner_axes_mm(spec, np.clip(mid[:, 2], 0, None))
    near = (mid[:, 0] / (ai + step)) ** 2 + (mid[:, 1] / (bi + step)) ** 2 <= 1.0
    return Rods(starts[near], ends[near], spec.tb_rod_diameter_mm / 2)


def rasterise_rods(rods: Rods, xf, yf, zf) -> np.ndarray:
    """Boolean (len(zf), len(yf), len(xf)): fine-grid points within ``radius`` of any rod.

    ``xf``, ``yf``, ``zf`` are increasing, evenly spaced coordinate vectors (mm).
    Each rod is evaluated only in its own bounding box.
    """
    out = np.zeros((len(zf), len(yf), len(xf)), bool)
    if len(rods.starts) == 0:
        return out
    r = rods.radius_mm
    hx, hy, hz = (float(v[1] - v[0]) if len(v) > 1 else 1.0 for v in (xf, yf, zf))
    sel = np.flatnonzero((rods.z_hi >= zf[0]) & (rods.z_lo <= zf[-1]))
    for k in sel:
        p0, p1 = rods.starts[k], rods.ends[k]
        lo, hi = np.minimum(p0, p1) - r, np.maximum(p0, p1) + r
        i0, i1 = np.searchsorted(xf, lo[0] - hx), np.searchsorted(xf, hi[0] + hx)
        j0, j1 = np.searchsorted(yf, lo[1] - hy), np.searchsorted(yf, hi[1] + hy)
        k0, k1 = np.searchsorted(zf, lo[2] - hz), np.searchsorted(zf, hi[2] + hz)
        if i0 >= i1 or j0 >= j1 or k0 >= k1:
            continue
        d = p1 - p0
        dd = float(d @ d)
        px = xf[i0:i1][None, None, :] - p0[0]
        py = yf[j0:j1][None, :, None] - p0[1]
        pz = zf[k0:k1][:, None, None] - p0[2]
        t = np.clip((px * d[0] + py * d[1] + pz * d[2]) / dd, 0.0, 1.0)
        dist2 = (px - t * d[0]) ** 2 + (py - t * d[1]) ** 2 + (pz - t * d[2]) ** 2
        out[k0:k1, j0:j1, i0:i1] |= dist2 <= r * r
    return out


def vascular_canals(spec: PhantomSpec) -> Rods:
    """Oblique canals from the marrow to the periosteal surface (avoiding the scan's first and last 10 %)."""
    n = spec.vascular_canals
    if n == 0:
        return Rods(np.zeros((0, 3)), np.zeros((0, 3)), spec.canal_diameter_mm / 2)
    rng = np.random.default_rng([spec.geometry_seed, 15485863])
    z0 = rng.uniform(0.1, 0.9, n) * spec.length_mm
    theta = rng.uniform(0, 2 * np.pi, n)
    dz = rng.uniform(0.05, 0.15, n) * rng.choice([-1, 1], n)  # nutrient canals run obliquely
    dtheta = rng.uniform(-0.15, 0.15, n)
    ai, bi = inner_axes_mm(spec, z0)
    a, b = outer_axes_mm(spec, z0 + dz)
    # start 0.02 mm inside the marrow, end 0.02 mm outside the periosteum: the canal opens on both sides
    r0 = ellipse_radius(ai, bi, theta) - 0.02
    r1 = ellipse_radius(a, b, theta + dtheta) + 0.02
    starts = np.stack([r0 * np.cos(theta), r0 * np.sin(theta), z0], axis=1)
    ends = np.stack([r1 * np.cos(theta + dtheta), r1 * np.sin(theta + dtheta), z0 + dz], axis=1)
    return Rods(starts, ends, spec.canal_diameter_mm / 2)
