"""Cortical porosity (Ct.Po): canals through the cortex are pores, surface pits and lesions are not.

Analytic tubes (binary: no partial volume) give exact pore volumes; the phantoms give the accuracy
under blur and noise, where a canal loses its partial-volume rim and its mouth to the marrow.
"""

import numpy as np
import pytest

from ctbone import analyze
from ctbone.measure.morphometry import standard_morphometry
from ctbone.measure.porosity import cortical_porosity_pct, cortical_pores
from ctbone.options import AnalysisOptions
from ctbone.phantoms import PhantomSpec, make_phantom
from ctbone.segment import segment
from ctbone.segment.compartments import CANAL_RADIUS_MM
from ctbone.volume import Volume

VOXEL = 0.01
R_OUT, R_IN, LENGTH = 0.5, 0.36, 0.6


def _tube():
    """Binary tube (z, y, x), axis along z through the grid's centre, and its coordinates in mm."""
    n = int(round(0.62 / VOXEL))
    c = np.arange(-n, n + 1) * VOXEL
    z = (np.arange(int(round(LENGTH / VOXEL))) + 0.5) * VOXEL
    zz, yy, xx = np.meshgrid(z, c, c, indexing="ij")
    rr = np.hypot(yy, xx)
    return (rr <= R_OUT) & (rr > R_IN), (zz, yy, xx)


def _radial_hole(coords, z_mm, angle_deg, radius_mm):
    """A cylinder of ``radius_mm`` along the ray at ``angle_deg`` in the slice plane, centred at ``z_mm``."""
    zz, yy, xx = coords
    u = np.array([np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))])
    along = xx * u[0] + yy * u[1]
    across = -xx * u[1] + yy * u[0]
    return (along > 0) & (np.hypot(across, zz - z_mm) <= radius_mm)


def _morphometry(mask):
    seg = segment(Volume(mask.astype(np.float32), spacing=(VOXEL,) * 3), AnalysisOptions(min_particle_mm3=0))
    return standard_morphometry(seg), seg


def test_canals_through_the_cortex_are_its_pores_not_marrow():
    # four 40 um canals (4 voxels, under the 70 um canal limit) from the marrow to the periosteum
    tube, coords = _tube()
    canals = np.zeros_like(tube)
    for k, angle in enumerate((0, 90, 180, 270)):
        canals |= _radial_hole(coords, 0.15 + 0.1 * k, angle, 0.02)
    m, seg = _morphometry(tube & ~canals)
    truth_pct = 100 * (tube & canals).sum() / tube.sum()
    # binary input: the canal voxels are exact; what is lost is the canals' mouths at the endosteum (below)
    assert m["ct_po_pct"] == pytest.approx(truth_pct, rel=0.15)
    assert m["ma_ar_mm2"] == pytest.approx(np.pi * R_IN ** 2, rel=0.03)
    crop = tuple(slice(a, b) for a, b in seg.info["crop_zyx"])
    in_wall = (tube & canals)[crop]
    # the canal's mouth, where balls of the canal radius in the cavity reach into it, joins the marrow:
    # 12 % of a canal crossing this 140 um wall; the rest of the canal is cortex
    assert (seg.marrow.array.astype(bool) & in_wall).sum() < 0.2 * in_wall.sum()


def test_a_wide_opening_is_not_porosity():
    # a 200 um perforation (wider than twice the canal radius) is a lesion: it stays with the marrow
    # and its rims are not counted as pores
    assert 2 * 0.1 > 2 * CANAL_RADIUS_MM
    tube, coords = _tube()
    hole = _radial_hole(coords, 0.3, 45, 0.1)
    m, _ = _morphometry(tube & ~hole)
    assert m["ct_po_pct"] < 0.05


def test_pits_of_the_periosteal_surface_are_not_pores():
    # single-voxel pits on the outer surface (noise): filled by the envelope's closing, not pores
    tube, coords = _tube()
    rr = np.hypot(coords[1], coords[2])
    rng = np.random.default_rng(0)
    outer_layer = tube & (rr > R_OUT - VOXEL)
    pits = outer_layer & (rng.random(tube.shape) < 0.05)
    m, _ = _morphometry(tube & ~pits)
    assert pits.sum() > 500
    assert m["ct_po_pct"] == 0.0


def test_lesions_are_not_pores_and_outgrowths_not_cortex():
    env = np.zeros((20, 30, 30), bool)
    env[:, 2:28, 2:28] = True
    bone = env.copy()
    bone[5:10, 10:14, 10:14] = False  # a deep pore, 80 voxels
    bone[12:16, 10:14, 10:14] = False  # another, 64 voxels
    n = env.sum()
    assert cortical_porosity_pct(env, bone, env, spacing_mm=(1, 1, 1)) == pytest.approx(100 * 144 / n)
    lesion = np.zeros_like(env)
    lesion[12:16] = True
    assert cortical_porosity_pct(env, bone, env, spacing_mm=(1, 1, 1), lesion=lesion) == pytest.approx(100 * 80 / n)
    outgrowth = np.zeros_like(env)
    outgrowth[:, :, 20:] = True  # no pore there: only the compartment shrinks
    expected = 100 * 144 / (env & ~outgrowth).sum()
    assert cortical_porosity_pct(env, bone, env, spacing_mm=(1, 1, 1), outgrowth=outgrowth) == pytest.approx(expected)
    # a pore reaching the surface layer from deep inside counts whole; one only in the layer does not
    bone2 = env.copy()
    bone2[5:10, 2:8, 10:14] = False  # opens on the y = 2 face
    bone2[5:7, 2, 20:22] = False  # a pit, one voxel deep
    pores = cortical_pores(env, bone2, env, spacing_mm=(1, 1, 1))
    assert pores.sum() == 5 * 6 * 4
    assert not pores[5:7, 2, 20:22].any()


# ---- phantoms: blur 0.01 mm, noise 60 HU, partial volume ------------------------------------------

PERFORATION = {"kind": "perforation", "z_mm": 0.3, "angle_deg": 0.0, "radius_mm": 0.1}
BLASTIC = {"kind": "blastic", "z_mm": 0.5, "angle_deg": 200.0, "half_length_mm": 0.25}


def _canal_phantom(**kw):
    spec = PhantomSpec(voxel_mm=0.01, length_mm=0.8, metaphysis_length_mm=0, supersample=2, **kw)
    vol, truth = make_phantom(spec, seed=2)
    return analyze(vol).metrics, truth


def test_phantom_without_canals_has_no_porosity_despite_its_lesions():
    # a perforation and a porous woven cap, no canals: before the lesions were kept out, the woven
    # cap's spaces and the surface pits read as 0.1-0.7 % porosity
    metrics, truth = _canal_phantom(lesions=(PERFORATION, BLASTIC))
    assert truth["ct_po_pct"] == 0.0
    assert metrics["ct_po_pct"] < 0.01


def test_phantom_canals_six_voxels_wide_are_measured_low_by_a_third_at_most():
    # 60 um canals at 10 um voxels, with a perforation and a woven cap. Measured 0.60-0.72 of the truth on
    # the phantoms (docs/metrics.md): the canal's partial-volume rim reads as bone (-14 %) and its mouth
    # joins the marrow (-15 %). Threshold segmentation cannot add pores, so the ratio stays under 1
    metrics, truth = _canal_phantom(vascular_canals=6, canal_diameter_mm=0.06, lesions=(PERFORATION, BLASTIC))
    assert truth["ct_po_pct"] > 0.3
    assert 0.5 <= metrics["ct_po_pct"] / truth["ct_po_pct"] <= 1.0
