"""`make_phantom`: the fine-grid model, block-averaged, blurred and noised, with exact truth.

The fine grid (``supersample`` points per voxel and axis) is evaluated slab by
slab along z and only around the bone (outside it, air and the soft-tissue
sleeve do not change along z and are averaged once), so memory stays bounded
for any length. Ground truth is counted on the same fine samples, so it is
exact for the model the image was drawn from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..volume import Volume
from .geometry import (
    blastic_region,
    bone_extent_mm,
    cortical_thickness_at_mm,
    inner_axes_mm,
    lytic_region,
    outer_axes_mm,
    rasterise_rods,
    resolve_lesions,
    trabecular_rods,
    vascular_canals,
)
from .spec import MAX_PHANTOM_VOXELS, PhantomSpec, PhantomSpecError
from .surface import periosteal_openings

log = logging.getLogger(__name__)

AIR, SOFT, MARROW, CORTEX, TRABECULAR, WOVEN, TUMOUR = range(7)
LABEL_NAMES = ("air", "soft_tissue", "marrow", "cortex", "trabecular", "woven", "tumour")
# SPEC default: openings smaller than this on the periosteal surface are not counted as defects
MIN_DEFECT_AREA_MM2 = 0.005
# fine voxels evaluated per slab (peak memory ~0.2 GB for a 5 mm phantom)
_SLAB_FINE_VOXELS = 2_000_000


@dataclass(frozen=True)
class Grid:
    """Output grid: shape (z, y, x), coordinate vectors (mm) and the column box around the bone."""

    shape: tuple[int, int, int]
    z_mm: np.ndarray
    y_mm: np.ndarray
    x_mm: np.ndarray
    soft_axes_mm: tuple[float, float]
    box: tuple[slice, slice]  # (y, x) coarse slices evaluated on the fine grid

    @property
    def origin(self) -> tuple[float, float, float]:
        return (float(self.x_mm[0]), float(self.y_mm[0]), float(self.z_mm[0]))


def make_grid(spec: PhantomSpec) -> Grid:
    """The output grid: z from 0, x and y centred on the bone axis (so an x-flip mirrors x -> -x)."""
    v, vz = spec.voxel_mm, spec.z_spacing_mm
    nz = max(1, int(round(spec.length_mm / vz)))
    shape = spec.shape or (nz, 0, 0)
    z_dense = np.linspace(-vz, (shape[0] - 1) * vz + vz, 1024)  # the slices' span, before they are counted out
    a_all, b_all = outer_axes_mm(spec, z_dense)
    # the soft-tissue sleeve ignores lesions, so a scan and its intact twin differ only by the lesions
    soft = (float(a_all.max()) + spec.soft_tissue_mm, float(b_all.max()) + spec.soft_tissue_mm)
    bone_a, bone_b = bone_extent_mm(spec, z_dense)
    if spec.shape is not None:
        nz, ny, nx = spec.shape
    else:
        ny = int(np.ceil(2 * (max(soft[1], bone_b) + spec.air_margin_mm) / v))
        nx = int(np.ceil(2 * (max(soft[0], bone_a) + spec.air_margin_mm) / v))
    if nz * ny * nx > MAX_PHANTOM_VOXELS:
        raise PhantomSpecError(f"phantom spec: {nz} x {ny} x {nx} voxels is more than a phantom built in memory may "
                               f"hold ({MAX_PHANTOM_VOXELS:.0e}). Potential fix: a larger voxel_mm or a shorter "
                               f"length_mm")
    z_mm = np.arange(nz) * vz
    y_mm = (np.arange(ny) - (ny - 1) / 2) * v
    x_mm = (np.arange(nx) - (nx - 1) / 2) * v
    if bone_a + v > x_mm[-1] or bone_b + v > y_mm[-1]:
        raise PhantomSpecError(f"phantom spec: shape {spec.shape} is too small for a bone of "
                               f"{2 * bone_a:.2f} x {2 * bone_b:.2f} mm; Potential fix: shape=None (automatic)")
    # one coarse voxel of slack beyond the widest bone so every partial-volume voxel is fine-sampled
    bx = np.flatnonzero(np.abs(x_mm) <= bone_a + 1.5 * v)
    by = np.flatnonzero(np.abs(y_mm) <= bone_b + 1.5 * v)
    box = (slice(by[0], by[-1] + 1), slice(bx[0], bx[-1] + 1))
    return Grid((nz, ny, nx), z_mm, y_mm, x_mm, soft, box)


def fine_offsets_mm(spec: PhantomSpec, *, axis: str = "xy") -> np.ndarray:
    """Positions of the fine samples inside a voxel along ``axis`` ("xy" or "z"), relative to its centre."""
    s = spec.supersample
    return ((np.arange(s) + 0.5) / s - 0.5) * (spec.z_spacing_mm if axis == "z" else spec.voxel_mm)


def _fine(coarse_mm: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return (coarse_mm[:, None] + offsets[None, :]).ravel()


@dataclass
class FineBlock:
    """Fine-grid labels (see LABEL_NAMES), intensities (HU) and lesion bit masks of a block."""

    labels: np.ndarray
    intensity_hu: np.ndarray
    lytic_bits: np.ndarray  # bit i set: inside lytic lesion i
    woven_bits: np.ndarray  # bit i set: woven bone of blastic lesion i
    envelope: np.ndarray  # intact periosteal envelope
    marrow: np.ndarray  # intact marrow cavity
    cortex: np.ndarray  # intact cortical bone (cortical compartment minus vascular canals)
    trabecular: np.ndarray  # intact trabecular bone (before lesions)
    x_mm: np.ndarray
    y_mm: np.ndarray
    z_mm: np.ndarray


def evaluate_fine(spec: PhantomSpec, grid: Grid, lesions, rods, xf, yf, zf, canals=None) -> FineBlock:
    """Labels and intensities at fine points xf × yf × zf (right-limb frame)."""
    canals = canals if canals is not None else vascular_canals(spec)
    a, b = (v[:, None, None] for v in outer_axes_mm(spec, zf))
    ai, bi = (v[:, None, None] for v in inner_axes_mm(spec, zf))
    x, y, z = xf[None, None, :], yf[None, :, None], zf[:, None, None]
    x2, y2 = x * x, y * y
    envelope = x2 / (a * a) + y2 / (b * b) <= 1.0
    marrow = x2 / (ai * ai) + y2 / (bi * bi) <= 1.0
    compartment = envelope & ~marrow
    canal = rasterise_rods(canals, xf, yf, zf) & compartment
    cortex = compartment & ~canal
    trab = rasterise_rods(rods, xf, yf, zf) & marrow
    soft = (x2 / grid.soft_axes_mm[0] ** 2 + y2 / grid.soft_axes_mm[1] ** 2 <= 1.0)
    shape = envelope.shape

    lytic_bits = np.zeros(shape, np.uint32)
    woven_bits = np.zeros(shape, np.uint32)
    for les in lesions:
        ks = np.flatnonzero((zf >= les.z_min_mm) & (zf <= les.z_max_mm))
        if len(ks) == 0:
            continue
        sl = slice(ks[0], ks[-1] + 1)
        if les.is_lytic:
            inside = lytic_region(les, x, y, z[sl])
            lytic_bits[sl] |= inside.astype(np.uint32) << np.uint32(les.index)
        else:
            inside = blastic_region(spec, les, x, y, z[sl], a[sl], b[sl])
            woven_bits[sl] |= inside.astype(np.uint32) << np.uint32(les.index)

    removed = lytic_bits != 0
    labels = np.where(soft, np.uint8(SOFT), np.uint8(AIR)).astype(np.uint8)
    labels = np.broadcast_to(labels, shape).copy()
    labels[woven_bits != 0] = WOVEN
    labels[envelope] = MARROW  # vascular canals hold blood and soft tissue, like marrow
    labels[cortex] = CORTEX
    labels[trab] = TRABECULAR
    labels[envelope & removed] = TUMOUR

    lut = np.array([spec.air_hu, spec.soft_tissue_hu, spec.marrow_hu, spec.cortical_hu,
                    spec.trabecular_hu, spec.woven_hu, spec.tumour_hu], np.float32)
    intensity = lut[labels]
    for les in lesions:
        if not les.is_lytic and les.params["hu"] != spec.woven_hu:
            mine = (labels == WOVEN) & ((woven_bits >> np.uint32(les.index)) & 1).astype(bool)
            intensity[mine] = les.params["hu"]
    return FineBlock(labels, intensity, lytic_bits, woven_bits, envelope, marrow, cortex, trab, xf, yf, zf)


class _PatternTally:
    """Fine-voxel counts and coordinate sums per lesion bit pattern (for unions and centroids)."""

    def __init__(self):
        self.table: dict[int, np.ndarray] = {}

    def add(self, bits, where, x, y, z):
        if not where.any():
            return
        zz, yy, xx = np.nonzero(where)
        patterns, inverse = np.unique(bits[where], return_inverse=True)
        sums = np.stack([
            np.bincount(inverse),
            np.bincount(inverse, weights=x[xx]),
            np.bincount(inverse, weights=y[yy]),
            np.bincount(inverse, weights=z[zz]),
        ], axis=1).astype(float)
        for pattern, row in zip(patterns.tolist(), sums):
            self.table[pattern] = self.table.get(pattern, 0.0) + row

    def union(self, indices) -> np.ndarray:
        """[count, sum x, sum y, sum z] over voxels touched by any lesion in ``indices``."""
        mask = sum(1 << i for i in indices)
        total = np.zeros(4)
        for pattern, row in self.table.items():
            if pattern & mask:
                total += row
        return total


def _centroid(row: np.ndarray):
    return tuple(float(v) for v in row[1:] / row[0]) if row[0] > 0 else (None, None, None)


def make_phantom(spec: PhantomSpec, *, seed: int = 0) -> tuple[Volume, dict]:
    """Build a phantom scan and its exact ground truth.

    Parameters
    ----------
    spec : PhantomSpec
        Geometry, tissue values and lesions.
    seed : int, keyword-only
        Noise seed: the same seed gives an identical image, another seed other noise
        (the geometry depends only on ``spec``).

    Returns
    -------
    volume : Volume
        float32 HU image (z, y, x), spacing ``spec.spacing_mm``, identity direction;
        origin = patient (x, y, z) of voxel [0, 0, 0] (the bone axis is x = y = 0).
    truth : dict
        Exact values of the model, volumes counted on the fine grid (fine voxels × their volume),
        JSON-ready (plain Python). Positions are patient (x, y, z) mm, angles in the patient
        (x, y) plane. Keys:

        * ``bone_volume_mm3`` (cortex + trabeculae + woven bone), ``cortical_bone_volume_mm3``,
          ``intact_cortical_bone_volume_mm3`` (before lesions), ``cortical_compartment_mm3``
          (bone + vascular canals), ``ct_po_pct``, ``tb_bv_mm3``, ``intact_tb_bv_mm3``,
          ``tb_rod_diameter_mm`` (nominal), ``tv_mm3`` and ``marrow_volume_mm3`` (intact envelope
          and cavity);
        * ``ct_th_mm`` (nominal, mid-shaft), ``ct_th_min_mm`` / ``ct_th_max_mm`` (profile along z),
          ``tt_ar_mm2`` / ``ma_ar_mm2`` / ``ct_ar_mm2`` (analytic, at ``mid_shaft_z_mm``) and their
          whole-scan means ``*_mean_mm2``;
        * ``periosteal_surface_mm2``; ``cortical_defect_count`` (through-cortex openings of at least
          ``min_defect_area_mm2`` on the intact periosteal surface), ``cortical_defect_count_all``,
          ``cortical_defect_area_mm2``, ``largest_defect_area_mm2``, ``cortical_defect_pct``;
          ``defects``: one dict per opening (lesion_ids, z_mm, angle_deg, radius_mm,
          equivalent_radius_mm, area_mm2, volume_mm3 = cortical bone removed, centroid_mm);
        * ``lytic_volume_mm3`` (intact cortical bone removed by all lytic lesions),
          ``trabecular_bone_removed_mm3``, ``blastic_volume_mm3`` (woven bone, all outside the
          intact envelope), ``blastic_mean_density_hu`` (material value, before partial volume);
        * ``lesions``: one dict per lesion, its resolved parameters, ``volume_mm3`` and
          ``centroid_mm`` (lytic: also cortical/trabecular parts, opening_area_mm2, through_cortex);
        * ``vascular_canal_segments_mm``, ``fine_mean_hu``, ``shape``, ``spacing_mm``, ``origin_mm``,
          ``side``, ``seed``, ``spec``.

    Examples
    --------
    >>> from ctbone.phantoms import PhantomSpec, make_phantom
    >>> vol, truth = make_phantom(PhantomSpec(length_mm=0.4, metaphysis_length_mm=0), seed=1)
    >>> vol.shape[0], truth["cortical_defect_count"]
    (20, 0)
    """
    grid = make_grid(spec)
    lesions = resolve_lesions(spec)
    rods = trabecular_rods(spec)
    canals = vascular_canals(spec)
    offsets, z_offsets = fine_offsets_mm(spec), fine_offsets_mm(spec, axis="z")
    s = spec.supersample
    nz, ny, nx = grid.shape
    ys, xs = grid.box
    xf, yf = _fine(grid.x_mm[xs], offsets), _fine(grid.y_mm[ys], offsets)

    # outside the box: air and the soft-tissue sleeve, constant along z, partial volume by supersampling
    yy, xx = _fine(grid.y_mm, offsets)[:, None], _fine(grid.x_mm, offsets)[None, :]
    soft = xx ** 2 / grid.soft_axes_mm[0] ** 2 + yy ** 2 / grid.soft_axes_mm[1] ** 2 <= 1.0
    plane_fine = np.where(soft, spec.soft_tissue_hu, spec.air_hu)
    plane = plane_fine.reshape(ny, s, nx, s).mean(axis=(1, 3)).astype(np.float32)
    image = np.empty(grid.shape, np.float32)

    counts = dict.fromkeys(("envelope", "marrow", "compartment", "cortex_intact", "trab_intact",
                            "cortex", "trab", "woven"), 0)
    lost_cortex, lost_trab, woven = _PatternTally(), _PatternTally(), _PatternTally()
    fine_sum = 0.0
    box_fine_per_slice = len(xf) * len(yf) * s
    slab = max(1, _SLAB_FINE_VOXELS // max(1, box_fine_per_slice))
    for k0 in range(0, nz, slab):
        k1 = min(nz, k0 + slab)
        zf = _fine(grid.z_mm[k0:k1], z_offsets)
        blk = evaluate_fine(spec, grid, lesions, rods, xf, yf, zf, canals)
        nzc, nyc, nxc = k1 - k0, ys.stop - ys.start, xs.stop - xs.start
        image[k0:k1] = plane
        image[k0:k1, ys, xs] = blk.intensity_hu.reshape(nzc, s, nyc, s, nxc, s).mean(axis=(1, 3, 5))
        fine_sum += float(blk.intensity_hu.sum(dtype=np.float64))
        # tally on the fine grid
        labels = blk.labels
        cortex_intact = blk.cortex
        removed = blk.lytic_bits != 0
        trab_intact = blk.trabecular
        counts["envelope"] += int(blk.envelope.sum())
        counts["marrow"] += int(blk.marrow.sum())
        counts["compartment"] += int((blk.envelope & ~blk.marrow).sum())
        counts["cortex_intact"] += int(cortex_intact.sum())
        counts["trab_intact"] += int(trab_intact.sum())
        counts["cortex"] += int((labels == CORTEX).sum())
        counts["trab"] += int((labels == TRABECULAR).sum())
        counts["woven"] += int((labels == WOVEN).sum())
        lost_cortex.add(blk.lytic_bits, cortex_intact & removed, xf, yf, zf)
        lost_trab.add(blk.lytic_bits, trab_intact & removed, xf, yf, zf)
        woven.add(blk.woven_bits, labels == WOVEN, xf, yf, zf)
    # the part of the fine grid outside the box is the constant plane
    box_plane = plane_fine.reshape(ny, s, nx, s)[ys, :, xs, :]
    fine_sum += nz * s * (float(plane_fine.sum()) - float(box_plane.sum()))

    truth = _truth(spec, grid, lesions, counts, lost_cortex, lost_trab, woven, seed)
    truth["fine_mean_hu"] = fine_sum / (nz * ny * nx * s ** 3)
    flip = np.array([-1.0 if spec.side == "L" else 1.0, 1.0, 1.0])
    truth["vascular_canal_segments_mm"] = [[list(p0 * flip), list(p1 * flip)]
                                           for p0, p1 in zip(canals.starts, canals.ends)]
    truth = _plain(truth)

    if spec.blur_sigma_mm > 0:
        image = ndimage.gaussian_filter(image, sigma=[spec.blur_sigma_mm / d for d in spec.spacing_mm],
                                        mode="nearest")
    if spec.noise_hu > 0:
        rng = np.random.default_rng(seed)
        image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(spec.noise_hu)
    if spec.side == "L":
        image = np.ascontiguousarray(image[:, :, ::-1])
    volume = Volume(image, spacing=spec.spacing_mm, origin=grid.origin, direction=np.eye(3), unit="HU",
                    meta={"source": f"ctbone phantom (side {spec.side}, seed {seed})", "vendor": "ctbone phantom",
                          "modality": "CT", "phantom_seed": seed, "side": spec.side})
    log.debug("phantom %s: %s", volume, {k: truth[k] for k in ("bone_volume_mm3", "cortical_defect_count")})
    return volume, truth


def _plain(value):
    """Numpy scalars and arrays to Python numbers and lists (JSON-ready, comparable)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _truth(spec, grid, lesions, counts, lost_cortex, lost_trab, woven, seed) -> dict:
    h3 = spec.voxel_mm ** 2 * spec.z_spacing_mm / spec.supersample ** 3
    flip = -1.0 if spec.side == "L" else 1.0

    def to_patient(xyz):
        x, y, z = xyz
        return None if x is None else [flip * x, y, z]

    def patient_angle(deg):
        deg = (180.0 - deg) if spec.side == "L" else deg
        return float(round(deg % 360.0, 9) % 360.0)  # round: -1e-14 must not become 360

    z_fine = _fine(grid.z_mm, fine_offsets_mm(spec, axis="z"))
    openings, per_lesion, surface_mm2 = periosteal_openings(spec, lesions, z_fine)

    lesion_rows = []
    for les in lesions:
        p = les.params
        row = {"id": les.index + 1, "kind": les.kind, "z_mm": p["z_mm"], "angle_deg": patient_angle(p["angle_deg"])}
        for key in ("radius_mm", "depth_mm", "half_length_mm", "extent_deg", "thickness_mm", "porosity", "pore_mm"):
            if key in p and p[key] is not None:
                row[key] = p[key]
        if les.is_lytic:
            c = lost_cortex.union([les.index])
            t = lost_trab.union([les.index])
            both = c + t
            row.update(cortical_bone_removed_mm3=c[0] * h3, trabecular_bone_removed_mm3=t[0] * h3,
                       volume_mm3=both[0] * h3, centroid_mm=to_patient(_centroid(both)),
                       opening_area_mm2=per_lesion.get(les.index, {}).get("outer_area_mm2", 0.0),
                       through_cortex=per_lesion.get(les.index, {}).get("through", False))
        else:
            w = woven.union([les.index])
            row.update(volume_mm3=w[0] * h3, centroid_mm=to_patient(_centroid(w)), mean_density_hu=p["hu"])
        lesion_rows.append(row)

    defects = []
    for op in openings:
        if not op["through"]:
            continue
        c = lost_cortex.union(op["lesions"])
        x, y, z = op["centroid_mm"]
        single = [lesions[i].params for i in op["lesions"]] if len(op["lesions"]) == 1 else []
        defects.append({
            "lesion_ids": [i + 1 for i in op["lesions"]],
            "z_mm": z,
            "angle_deg": patient_angle(float(np.rad2deg(np.arctan2(y, x)))),
            "radius_mm": single[0]["radius_mm"] if single else None,
            "equivalent_radius_mm": float(np.sqrt(op["area_mm2"] / np.pi)),
            "area_mm2": op["area_mm2"],
            "volume_mm3": c[0] * h3,
            "centroid_mm": to_patient((x, y, z)),
        })
    counted = [d for d in defects if d["area_mm2"] >= MIN_DEFECT_AREA_MM2]

    lytic_ids = [les.index for les in lesions if les.is_lytic]
    blastic_ids = [les.index for les in lesions if not les.is_lytic]
    w_all = woven.union(blastic_ids)
    z_mid = spec.length_mm / 2
    scan_length_mm = grid.shape[0] * spec.z_spacing_mm
    a, b = (float(v) for v in outer_axes_mm(spec, z_mid))
    ai, bi = (float(v) for v in inner_axes_mm(spec, z_mid))
    thickness_profile = cortical_thickness_at_mm(spec, grid.z_mm)
    woven_hu = [lesions[i].params["hu"] for i in blastic_ids]
    woven_mean = (float(np.average(woven_hu, weights=[max(woven.union([i])[0], 1e-12) for i in blastic_ids]))
                  if blastic_ids and w_all[0] > 0 else None)
    return {
        "bone_volume_mm3": (counts["cortex"] + counts["trab"] + counts["woven"]) * h3,
        "cortical_bone_volume_mm3": counts["cortex"] * h3,
        "intact_cortical_bone_volume_mm3": counts["cortex_intact"] * h3,
        "cortical_compartment_mm3": counts["compartment"] * h3,
        "ct_po_pct": 100.0 * (1.0 - counts["cortex_intact"] / counts["compartment"]) if counts["compartment"] else 0.0,
        "vascular_canals": spec.vascular_canals,
        "tb_bv_mm3": counts["trab"] * h3,
        "intact_tb_bv_mm3": counts["trab_intact"] * h3,
        "tb_rod_diameter_mm": spec.tb_rod_diameter_mm,
        "tv_mm3": counts["envelope"] * h3,
        "marrow_volume_mm3": counts["marrow"] * h3,
        "ct_th_mm": spec.cortical_thickness_mm,
        "ct_th_min_mm": float(thickness_profile.min()),
        "ct_th_max_mm": float(thickness_profile.max()),
        "mid_shaft_z_mm": z_mid,
        "tt_ar_mm2": float(np.pi * a * b),
        "ma_ar_mm2": float(np.pi * ai * bi),
        "ct_ar_mm2": float(np.pi * (a * b - ai * bi)),
        # means over the whole scan (volume / length), comparable with areas measured over a full-length ROI
        "tt_ar_mean_mm2": counts["envelope"] * h3 / scan_length_mm,
        "ma_ar_mean_mm2": counts["marrow"] * h3 / scan_length_mm,
        "ct_ar_mean_mm2": counts["cortex_intact"] * h3 / scan_length_mm,
        "periosteal_surface_mm2": surface_mm2,
        "cortical_defect_count": len(counted),
        "cortical_defect_count_all": len(defects),
        "cortical_defect_area_mm2": float(sum(d["area_mm2"] for d in counted)),
        "largest_defect_area_mm2": float(max((d["area_mm2"] for d in counted), default=0.0)),
        "cortical_defect_pct": 100.0 * float(sum(d["area_mm2"] for d in counted)) / surface_mm2,
        "defects": defects,
        "lytic_volume_mm3": lost_cortex.union(lytic_ids)[0] * h3,
        "trabecular_bone_removed_mm3": lost_trab.union(lytic_ids)[0] * h3,
        "blastic_volume_mm3": w_all[0] * h3,
        "blastic_mean_density_hu": woven_mean,
        "lesions": lesion_rows,
        "min_defect_area_mm2": MIN_DEFECT_AREA_MM2,
        "side": spec.side,
        "seed": seed,
        "shape": list(grid.shape),
        "voxel_mm": spec.voxel_mm,
        "spacing_mm": list(spec.spacing_mm),
        "origin_mm": list(grid.origin),
        "spec": spec.to_dict(),
    }


def fine_slice(spec: PhantomSpec, z_index: int) -> FineBlock:
    """The fine grid under output slice ``z_index`` over the whole (y, x) extent, right-limb frame.

    For tests and figures: block-averaging ``intensity_hu`` by ``spec.supersample`` gives the
    noise-free, blur-free slice of `make_phantom` (before mirroring a left limb).
    """
    grid = make_grid(spec)
    if not 0 <= z_index < grid.shape[0]:
        raise IndexError(f"z_index {z_index} outside 0..{grid.shape[0] - 1}")
    offsets = fine_offsets_mm(spec)
    zf = _fine(grid.z_mm[z_index:z_index + 1], fine_offsets_mm(spec, axis="z"))
    return evaluate_fine(spec, grid, resolve_lesions(spec), trabecular_rods(spec), _fine(grid.x_mm, offsets),
                         _fine(grid.y_mm, offsets), zf)
