"""Segmentation on phantoms (ctbone.phantoms): threshold, BV, cortical thickness and areas vs exact truth."""

import numpy as np
import pytest

from ctbone.errors import SegmentationError
from ctbone.measure.morphometry import standard_morphometry
from ctbone.options import AnalysisOptions
from ctbone.phantoms import LABEL_NAMES, PhantomSpec, fine_slice, make_phantom
from ctbone.segment import segment
from ctbone.segment.coded import CodedValues
from ctbone.segment.envelope import bridge_open_slices, open_envelope_slices
from ctbone.segment.smooth import gaussian_smooth
from ctbone.volume import Volume


@pytest.fixture(scope="module")
def phantom():
    # a plain shaft (no metaphysis) at 0.03 mm with the default noise (60 HU) and blur (0.01 mm)
    return make_phantom(PhantomSpec(voxel_mm=0.03, length_mm=1.5, metaphysis_length_mm=0.0), seed=0)


def test_auto_threshold_splits_bone_from_soft_tissue(phantom):
    vol, truth = phantom
    seg = segment(vol, AnalysisOptions())
    # the split must be bone / soft tissue (40 HU), not air (-1000) / tissue: between soft tissue and
    # trabecular bone (1000 HU)
    assert 300 < seg.threshold < 1000
    assert seg.threshold_method == "half-max-between-modes"


def test_shaft_morphometry_vs_truth(phantom):
    vol, truth = phantom
    # fixed threshold at the midpoint of soft tissue (40 HU) and cortex (1400 HU): unbiased for a solid cortex,
    # so what is tested here is segmentation + morphometry, not the threshold choice (see the xfail below)
    m = standard_morphometry(segment(vol, AnalysisOptions(threshold=720.0)))
    # BV, TV within 3 % (6-voxel cortex, noise 60 HU, blur 0.01 mm); areas within 3 % (taper 10 %: truth is
    # the mid-shaft value, the ROI mean equals it for a linear taper)
    assert m["bv_mm3"] == pytest.approx(truth["bone_volume_mm3"], rel=0.03)
    assert m["tv_mm3"] == pytest.approx(truth["tv_mm3"], rel=0.03)
    assert m["tt_ar_mm2"] == pytest.approx(truth["tt_ar_mm2"], rel=0.03)
    assert m["ma_ar_mm2"] == pytest.approx(truth["ma_ar_mm2"], rel=0.03)
    # Ct.Th within 1 voxel (plain-EDT parity convention: +0.5 voxel on average)
    assert abs(m["ct_th_mm"] - truth["ct_th_mm"]) <= 0.03
    assert m["ct_po_pct"] < 1.0


def _truth_bone_mask(spec, n_slices):
    """Voxels at least half bone on the phantom's fine grid (the truth the threshold should reproduce)."""
    bone_labels = [LABEL_NAMES.index(n) for n in ("cortex", "trabecular", "woven")]
    k = spec.supersample
    out = []
    for z in range(n_slices):
        labels = fine_slice(spec, z).labels
        frac = np.isin(labels, bone_labels).reshape(k, labels.shape[1] // k, k, labels.shape[2] // k, k)
        out.append(frac.mean(axis=(0, 2, 4)) >= 0.5)
    return np.stack(out)


@pytest.mark.parametrize("metaphysis_mm", [0.0, 1.2])
def test_auto_threshold_near_truth_optimal(metaphysis_mm):
    # truth-optimal = the threshold of the smoothed image with the best Dice against the truth mask
    # (700 HU on both phantoms). Required: within 5 % of the soft-tissue-to-cortex contrast (1360 HU)
    # and a Dice within 0.01 of the best one.
    spec = PhantomSpec(voxel_mm=0.03, length_mm=1.2, metaphysis_length_mm=metaphysis_mm)
    vol, _ = make_phantom(spec, seed=0)
    seg = segment(vol, AnalysisOptions())
    smooth = gaussian_smooth(vol.array)
    truth = _truth_bone_mask(spec, vol.shape[0])

    def dice(t):
        m = smooth > t
        return 2 * (m & truth).sum() / (m.sum() + truth.sum())

    candidates = np.arange(300.0, 1000.0, 10.0)
    scores = [dice(t) for t in candidates]
    optimal = candidates[int(np.argmax(scores))]
    assert abs(seg.threshold - optimal) <= 0.05 * (1400 - 40)
    assert dice(seg.threshold) >= max(scores) - 0.01


def test_fixed_threshold_roi_and_errors(phantom):
    vol, _ = phantom
    seg = segment(vol, AnalysisOptions(threshold=500.0, roi_mm=(0.3, 0.9)))
    assert seg.threshold_method == "fixed" and seg.threshold == 500.0
    assert seg.roi_mm == pytest.approx((0.3, 0.9))
    assert seg.bone.shape[0] == 21  # slices 10..30 inclusive at 0.03 mm
    assert seg.bone.shape == seg.envelope.shape == seg.image.shape == seg.raw_image.shape
    with pytest.raises(SegmentationError, match="no bone above threshold"):
        segment(vol, AnalysisOptions(threshold=5000.0))
    with pytest.raises(SegmentationError, match="outside the scan"):
        segment(vol, AnalysisOptions(roi_mm=(10.0, 12.0)))


@pytest.mark.parametrize("roi_mm", [None, (0.3, 0.9)])
def test_masks_are_separate_0_1_arrays(phantom, roi_mm):
    # the result's uint8 masks reuse the boolean masks' memory where they can: never one mask's memory
    # for another's, never the scan's (with an ROI the masks are cut from longer arrays: compact copies)
    vol, _ = phantom
    seg = segment(vol, AnalysisOptions(roi_mm=roi_mm))
    masks = [seg.bone, seg.envelope, seg.cortex, seg.marrow, seg.trabecular]
    for i, a in enumerate(masks):
        assert a.array.dtype == np.uint8 and a.array.flags.c_contiguous and a.array.max() <= 1
        assert a.array.size * a.array.itemsize == a.array.nbytes
        assert not np.shares_memory(a.array, vol.array)
        assert not any(np.shares_memory(a.array, b.array) for b in masks[i + 1:])
        base = a.array.base
        while isinstance(base, np.ndarray) and base.base is not None:
            base = base.base
        assert base is None or not isinstance(base, np.ndarray) or base.nbytes == a.array.nbytes


def test_binary_input_detected():
    a = np.zeros((12, 20, 20), np.float32)
    a[:, 5:15, 5:15] = 255
    seg = segment(Volume(a, spacing=(0.01,) * 3), AnalysisOptions(min_particle_mm3=0))
    assert seg.threshold_method == "binary-input" and seg.threshold == 127.5
    assert int(seg.bone.array.sum()) == 12 * 100  # no smoothing: every voxel kept exactly


@pytest.fixture(scope="module")
def metaphysis_phantom():
    # the metaphysis: rods 0.05 mm (2.5 voxels at 0.02 mm) in a thin cortex, noise 60 HU, blur 0.01 mm
    spec = PhantomSpec(voxel_mm=0.02, length_mm=1.0, metaphysis_length_mm=1.2)
    return make_phantom(spec, seed=0)


def test_trabecular_thickness_vs_truth(metaphysis_phantom):
    vol, truth = metaphysis_phantom
    m = standard_morphometry(segment(vol, AnalysisOptions()))
    # Tb.Th within half a voxel of the rod diameter (the parity bound of the thickness convention)
    assert abs(m["tb_th_mm"] - truth["tb_rod_diameter_mm"]) <= 0.5 * 0.02
    # total BV within 3 % (cortex at the global threshold + rods at their own half maximum)
    assert m["bv_mm3"] == pytest.approx(truth["bone_volume_mm3"], rel=0.03)
    assert 0 < m["tb_sp_mm"] < 0.5 and m["tb_n_per_mm"] > 0


@pytest.mark.parametrize("voxel_mm", [0.01, 0.02, 0.03])
def test_trabecular_bv_tv_vs_truth(voxel_mm):
    # rods 0.05 mm = 5, 2.5 and 1.7 voxels across, under blur 0.01 mm + smoothing 0.8 voxel and noise 60 HU.
    # The local threshold measured -11 %, -7 % and +1 %; the global one (half-way to the cortex) reads
    # 4.6 %, 0.2 % and 0.1 % for a true 12 %. Required: within 15 %.
    spec = PhantomSpec(voxel_mm=voxel_mm, length_mm=1.0, metaphysis_length_mm=1.2)
    vol, truth = make_phantom(spec, seed=0)
    m = standard_morphometry(segment(vol, AnalysisOptions()))
    assert m["tb_bv_tv_pct"] == pytest.approx(100 * truth["tb_bv_mm3"] / truth["marrow_volume_mm3"], rel=0.15)


def test_local_trabecular_threshold_only_adds_and_not_noise(metaphysis_phantom):
    from ctbone.segment.local_threshold import local_half_max_mask

    vol, _ = metaphysis_phantom
    seg_global = segment(vol, AnalysisOptions(trabecular_threshold="global"))
    seg_local = segment(vol, AnalysisOptions())
    g, loc = seg_global.bone.array.astype(bool), seg_local.bone.array.astype(bool)
    assert not (g & ~loc).any()  # never removes what the global threshold calls bone
    assert loc.sum() > 1.2 * g.sum()
    assert seg_local.info["trabecular_threshold"]["method"] == "local-half-max"
    # pure marrow with noise 60 HU (smoothed: ~15 HU): local maxima of noise are never promoted to bone
    rng = np.random.default_rng(1)
    marrow = (30 + 15 * rng.standard_normal((60, 60, 60))).astype(np.float32)
    extra, facts = local_half_max_mask(marrow, np.ones(marrow.shape, bool), global_threshold=715.0)
    assert extra.sum() == 0 and facts["floor"] > 30 + 6 * 14


def test_trabecular_threshold_option_is_checked(metaphysis_phantom):
    vol, _ = metaphysis_phantom
    with pytest.raises(SegmentationError, match="trabecular threshold"):
        segment(vol, AnalysisOptions(trabecular_threshold="otsu"))


def test_growth_plate_and_metaphyseal_roi():
    from ctbone.segment import find_growth_plate_mm, metaphyseal_roi_mm
    from ctbone.segment.envelope import periosteal_envelope_array

    voxel = 0.02
    n = 41
    c = (np.arange(n) - n // 2) * voxel
    rr = np.hypot(c[:, None], c[None, :])
    bone = np.zeros((100, n, n), bool)
    rng = np.random.default_rng(0)
    bone[:15] = (rr <= 0.35) & (rng.random((15, n, n)) < 0.6)  # epiphysis: dense spongy bone
    bone[15:19] = (rr <= 0.35) & (rr > 0.33)  # the plate: cartilage, a thin bony rim only
    bone[19:] = (rr <= 0.35) & (rr > 0.27)  # the shaft: cortex 4 voxels
    envelope = periosteal_envelope_array(bone, spacing_mm=(voxel,) * 3, bridge_diameter_mm=0.2)
    plate = find_growth_plate_mm(bone, envelope, spacing_z_mm=voxel)
    assert plate is not None and 15 * voxel <= plate <= 18 * voxel
    assert metaphyseal_roi_mm(plate, offset_mm=0.1, length_mm=1.0) == pytest.approx((plate + 0.1, plate + 1.1))
    # a plain tube has no plate
    assert find_growth_plate_mm(bone[19:], envelope[19:], spacing_z_mm=voxel) is None


def test_metaphyseal_roi_and_calibration_through_segment():
    # a binary long bone with a growth plate at slices 15-18 (0.3-0.36 mm): roi_mm="metaphyseal" puts the ROI
    # 0.1 mm past the plate, 1 mm long, towards the shaft; calibration turns the threshold into mg HA/cm3
    voxel = 0.02
    n = 41
    c = (np.arange(n) - n // 2) * voxel
    rr = np.hypot(c[:, None], c[None, :])
    bone = np.zeros((100, n + 10, n + 10), bool)
    rng = np.random.default_rng(0)
    core = np.pad(rr <= 0.35, 5)
    bone[:15] = core & (rng.random((15, n + 10, n + 10)) < 0.6)
    bone[15:19] = core & ~np.pad(rr <= 0.33, 5)
    bone[19:] = core & ~np.pad(rr <= 0.27, 5)
    image = np.where(bone, 1000.0, 0.0).astype(np.float32)
    vol = Volume(image, spacing=(voxel,) * 3, unit="HU")
    seg = segment(vol, AnalysisOptions(roi_mm="metaphyseal", min_particle_mm3=0, max_defect_diameter_mm=0.2))
    plate = seg.info["growth_plate_mm"]
    assert 15 * voxel <= plate <= 18 * voxel
    assert seg.roi_mm[0] == pytest.approx(plate + 0.1, abs=voxel) and seg.roi_mm[1] == pytest.approx(plate + 1.1, abs=voxel)
    cal = segment(vol, AnalysisOptions(calibration=(0.5, 10.0), min_particle_mm3=0))
    assert cal.image.unit == "mgHA/cm3" and cal.threshold == pytest.approx(0.5 * 500 + 10)
    assert "threshold_mgha_cm3" in standard_morphometry(cal)


def test_auto_threshold_skips_a_second_bone_mode():
    # air, soft tissue, dense trabecular bone (1000) and cortex (1400) as four histogram peaks: the
    # threshold separates bone from soft tissue (half-way 40..1400), not trabecular from cortical bone
    from ctbone.segment.threshold import auto_threshold

    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(-1000, 30, 300_000), rng.normal(40, 30, 400_000),
                             rng.normal(1000, 30, 150_000), rng.normal(1400, 30, 150_000)])
    threshold, method = auto_threshold(values.astype(np.float32))
    assert method == "half-max-between-modes" and threshold == pytest.approx(720, abs=25)
    # in vivo: bone peak (900) nearer soft tissue than soft tissue is to air: soft tissue stays the surround
    values = np.concatenate([rng.normal(-1000, 30, 300_000), rng.normal(40, 30, 400_000),
                             rng.normal(900, 30, 100_000)])
    assert auto_threshold(values.astype(np.float32))[0] == pytest.approx(470, abs=25)


def test_auto_threshold_ignores_values_that_are_not_finite():
    from ctbone.segment.threshold import auto_threshold, threshold_of_sample

    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(40, 30, 400_000), rng.normal(1000, 30, 150_000)]).astype(np.float32)
    rng.shuffle(values)
    with_gaps = values.copy()
    with_gaps[::7] = np.nan
    with_gaps[3::11] = np.inf
    finite = with_gaps[np.isfinite(with_gaps)]
    assert auto_threshold(with_gaps.reshape(50, 11000)) == threshold_of_sample(finite)
    assert auto_threshold(values.reshape(50, 11000)) == threshold_of_sample(values)


@pytest.mark.parametrize("spacing", [(0.01, 0.01, 0.01), (0.02, 0.01, 0.01)])
def test_near_outside_equals_the_distance_transform(spacing):
    from ctbone.segment.envelope import distance_inside, near_outside

    rng = np.random.default_rng(2)
    mask = ndimage_smooth_blobs(rng)
    for d in (0.015, 0.025, 0.035):
        expected = mask & (distance_inside(mask, spacing) <= d)
        assert np.array_equal(near_outside(mask, spacing_mm=spacing, distance_mm=d), expected)


def ndimage_smooth_blobs(rng):
    from scipy import ndimage

    return ndimage.gaussian_filter(rng.random((30, 40, 50)), 2) > 0.5


def test_auto_threshold_subsample_visits_every_column(monkeypatch):
    # the subsample's step must not be a multiple of the row length: a step of 100 on 100-voxel rows would
    # see one column only (x = 0: air and soft tissue), and the bone peak would vanish from the histogram
    import ctbone.segment.threshold as threshold

    monkeypatch.setattr(threshold, "MAX_SAMPLES", 1000)
    rng = np.random.default_rng(0)
    image = np.full((10, 100, 100), -1000.0, np.float32)
    image[:, 20:80, 20:80] = 40.0        # soft tissue
    image[:, 35:65, 40:60] = 1400.0      # bone, away from the first columns
    image += rng.normal(0, 30, image.shape).astype(np.float32)
    step = threshold.sample_stride(image.size, row_length=100)
    assert step >= 100 and np.gcd(step, 100) <= 2
    t, method = threshold.auto_threshold(image)
    assert method == "half-max-between-modes" and 500 < t < 900


def test_despeckle_keeps_the_largest_particle_and_large_ones_near_it():
    from ctbone.segment.cleanup import keep_bone_of_interest

    bone = np.zeros((30, 40, 50), bool)
    bone[5:25, 10:30, 10:20] = True  # the largest particle (4000 voxels)
    bone[5:10, 10:20, 23:28] = True  # large (250), 3 voxels away: kept
    bone[20:24, 12:16, 22:24] = True  # small (32), 2 voxels away: dropped
    bone[5:10, 10:20, 40:45] = True  # large, 20 voxels away: dropped
    bone[0, 0, 0] = True  # a speck at the corner, far: dropped
    expected = np.zeros_like(bone)
    expected[5:25, 10:30, 10:20] = True
    expected[5:10, 10:20, 23:28] = True
    facts = {}
    got = keep_bone_of_interest(bone, spacing_mm=(0.01,) * 3, min_particle_mm3=100e-6, near_mm=0.05, facts=facts)
    assert np.array_equal(got, expected)
    # the largest particle left out: the far 250-voxel block (a second bone would be this large)
    assert facts == {"analysed_mm3": pytest.approx(4000e-6), "left_out_mm3": pytest.approx(250e-6), "bones": 1,
                     "bones_mm3": [pytest.approx(4000e-6)], "analysed_bone": 1}
    # away from the array's corner (a box smaller than the array): the same particles
    shifted = np.zeros((40, 50, 60), bool)
    shifted[8:38, 6:46, 7:57] = bone
    got = keep_bone_of_interest(shifted, spacing_mm=(0.01,) * 3, min_particle_mm3=100e-6, near_mm=0.05)
    assert np.array_equal(got[8:38, 6:46, 7:57], expected) and got.sum() == expected.sum()
    assert not keep_bone_of_interest(np.zeros((3, 4, 5), bool), spacing_mm=(1, 1, 1), min_particle_mm3=0,
                                     near_mm=1).any()


def test_an_opening_wider_than_the_bridge_is_bridged_from_the_slices_around_it(caplog):
    # a perforation 0.8 mm across, bridged at 0.6 mm: the ball leaves the envelope open in its slices, whose
    # marrow then dropped out of TV (-23 % here; the demo's T2 lost 7 % of TV so). The envelope there is now
    # the outline interpolated between the closed slices on either side, and segment says so
    spec = PhantomSpec(voxel_mm=0.025, length_mm=2.0, metaphysis_length_mm=0.0,
                       lesions=({"kind": "perforation", "z_mm": 1.0, "angle_deg": 90.0, "radius_mm": 0.4},))
    vol, truth = make_phantom(spec, seed=0)
    with caplog.at_level("WARNING", logger="ctbone.segment"):
        seg = segment(vol, AnalysisOptions())
    (z0, z1), = seg.info["envelope_bridged_mm"]
    assert z0 < 1.0 < z1 and z1 - z0 < 0.8
    assert "--max-defect-diameter-mm" in caplog.text
    # a straight shaft: the interpolated outline is the shaft's own, up to the envelope's ~1 % at 25 um
    assert float(seg.envelope.array.sum()) * spec.voxel_mm ** 3 == pytest.approx(truth["tv_mm3"], rel=0.01)
    assert not open_envelope_slices(seg.envelope.array, seg.bone.array).any()
    # a ball wider than the opening bridges it itself; it sags ~0.2 mm into the opening (1 mm ball)
    wide = segment(vol, AnalysisOptions(max_defect_diameter_mm=1.0))
    assert "envelope_bridged_mm" not in wide.info
    assert float(wide.envelope.array.sum()) * spec.voxel_mm ** 3 == pytest.approx(truth["tv_mm3"], rel=0.03)


def test_open_slices_are_found_between_closed_ones_only():
    env = np.zeros((12, 9, 9), bool)
    env[:, 1:8, 1:8] = True
    bone = env.copy()
    bone[:, 3:6, 3:6] = False  # a tube: each slice's marrow is 9 voxels
    env[4:6] = bone[4:6]  # slices 4, 5 lost their marrow (the ball did not close them)
    env[10:] = bone[10:]  # so did the last two: the bone may end there, they are not reported
    assert np.array_equal(np.flatnonzero(open_envelope_slices(env, bone)), [4, 5])
    bridged, which = bridge_open_slices(env, bone, open_envelope_slices(env, bone), spacing_mm=(1.0, 1.0, 1.0))
    assert np.array_equal(bridged[4], env[3]) and np.array_equal(bridged[5], env[3])
    assert np.array_equal(np.flatnonzero(which), [4, 5]) and np.array_equal(bridged[10:], env[10:])


def test_a_shaft_that_narrows_is_not_bridged():
    # thick cortex and a small marrow in the middle 40 slices, a wide marrow on either side: the narrow
    # slices hold under a quarter of the median marrow, but their rings are closed; the interpolated outline
    # would only add a rim outside their bone (29 % of the envelope here), so nothing is bridged
    yy, xx = np.mgrid[:41, :41] - 20
    r = np.hypot(yy, xx)
    narrow = np.r_[np.zeros(20, bool), np.ones(40, bool), np.zeros(20, bool)]
    outer = np.where(narrow, 12, 16)[:, None, None]
    inner = np.where(narrow, 3, 12)[:, None, None]
    env = np.broadcast_to(r <= outer, (80, 41, 41)).copy()
    bone = env & (r > inner)
    assert open_envelope_slices(env, bone).sum() == 40
    bridged, which = bridge_open_slices(env, bone, open_envelope_slices(env, bone), spacing_mm=(1.0, 1.0, 1.0))
    assert not which.any() and np.array_equal(bridged, env)


def test_closed_envelopes_are_not_bridged(phantom, metaphysis_phantom):
    for vol, _ in (phantom, metaphysis_phantom):
        assert "envelope_bridged_mm" not in segment(vol, AnalysisOptions()).info


def test_compartments_split_the_envelope_as_the_derived_cortex_assumes():
    # Segmentation.cortex is made as the envelope less the marrow: split_compartments' two masks must be
    # disjoint and fill the envelope, on a metaphysis (trabeculae, channels) as on a shaft
    from ctbone.segment.compartments import split_compartments

    vol, _ = make_phantom(PhantomSpec(voxel_mm=0.03, length_mm=1.5, metaphysis_length_mm=0.6), seed=2)
    seg = segment(vol)
    bone, envelope = seg.bone.array.astype(bool), seg.envelope.array.astype(bool)
    cortex, marrow = split_compartments(bone, envelope, spacing_mm=seg.bone.spacing)
    assert cortex.any() and marrow.any()
    assert not (cortex & marrow).any() and np.array_equal(cortex | marrow, envelope)
    assert np.array_equal(seg.cortex.array.astype(bool), envelope & ~seg.marrow.array.astype(bool))
    assert np.array_equal(seg.trabecular.array.astype(bool), bone & seg.marrow.array.astype(bool))


def test_auto_threshold_warns_when_the_histogram_shows_no_contrast(caplog):
    import logging

    from ctbone.segment.threshold import auto_threshold, split_effectiveness

    rng = np.random.default_rng(3)
    noise = rng.normal(0.0, 20.0, (40, 50, 50)).astype(np.float32)
    # Otsu's split of one Gaussian population explains 2/pi of its variance
    assert split_effectiveness(noise.ravel(), 0.0) == pytest.approx(2 / np.pi, abs=0.01)
    with caplog.at_level(logging.WARNING, logger="ctbone"):
        assert auto_threshold(noise, source="noise.nii")[1] == "otsu-no-contrast"
    assert any("noise.nii" in r.getMessage() and "no bone contrast" in r.getMessage() for r in caplog.records)
    caplog.clear()
    # a few % of bone in tissue: contrast, no warning, whatever method finds the threshold
    scan = noise.copy()
    scan[:, 20:24, 20:40] += 1000.0
    with caplog.at_level(logging.WARNING, logger="ctbone"):
        t, _ = auto_threshold(scan, source="bone.nii")
    assert 100 < t < 900 and not caplog.records


def test_a_shaft_lying_along_x_is_flagged(caplog):
    import logging

    vol, _ = make_phantom(PhantomSpec(voxel_mm=0.04, length_mm=4.0, metaphysis_length_mm=0.0), seed=0)
    upright = segment(vol, AnalysisOptions())
    assert upright.info["long_axis_tilt_deg"] < 5
    lying = Volume(np.ascontiguousarray(vol.array.transpose(2, 1, 0)), spacing=vol.spacing[::-1], unit=vol.unit,
                   meta={"source": "lying.nii"})
    with caplog.at_level(logging.WARNING, logger="ctbone"):
        seg = segment(lying, AnalysisOptions())
    assert seg.info["long_axis_tilt_deg"] > 85 and seg.info["shaft_across_slices"]
    assert "shaft_across_slices" not in upright.info
    assert any("lying.nii" in r.getMessage() and "reslice" in r.getMessage() for r in caplog.records)


def _tube(*, outer_mm, inner_mm, length_mm, voxel_mm, edge_mm=0.02):
    """A straight tube along z with linear partial-volume edges (1000 in the wall, 0 elsewhere)."""
    n = int(round(2 * outer_mm / voxel_mm)) + 12
    z = int(round(length_mm / voxel_mm))
    y, x = (np.mgrid[:n, :n] - (n - 1) / 2) * voxel_mm
    r = np.hypot(y, x)
    wall = np.clip(0.5 + (outer_mm - r) / edge_mm, 0, 1) * np.clip(0.5 + (r - inner_mm) / edge_mm, 0, 1)
    return Volume(np.repeat((1000.0 * wall)[None], z, axis=0).astype(np.float32), spacing=(voxel_mm,) * 3, unit="HU",
                  meta={"source": "tube.nii"})


@pytest.mark.parametrize("degrees", [0.0, 12.0, 25.0])
def test_a_leaning_shaft_is_measured_and_its_slice_areas_are_larger_by_one_over_cos(degrees, caplog):
    import logging

    from ctbone.measure.morphometry import standard_morphometry
    from ctbone.phantoms import tilted

    # analytic: a prism leaning by t is cut by the slices in sections 1/cos(t) its perpendicular one
    tube = _tube(outer_mm=0.5, inner_mm=0.38, length_mm=5.0, voxel_mm=0.02)
    scan = tilted(tube, degrees) if degrees else tube
    with caplog.at_level(logging.WARNING, logger="ctbone"):
        # half the wall's value: the surface where the partial-volume edge crosses the tube's radii
        seg = segment(scan, AnalysisOptions(threshold=500.0))
    assert seg.info["shaft_tilt_deg"] == pytest.approx(degrees, abs=0.5)
    areas = standard_morphometry(seg)
    expected = np.pi * 0.5 ** 2 / np.cos(np.radians(degrees))
    # the circles sampled on the grid: measured Tt.Ar within 0.6 % and Ct.Ar within 2.7 % upright (a 6-voxel wall),
    # both within 0.12 % when leaning (the turned image's interpolated edges)
    assert areas["tt_ar_mm2"] == pytest.approx(expected, rel=0.02)
    assert areas["ct_ar_mm2"] == pytest.approx(np.pi * (0.5 ** 2 - 0.38 ** 2) / np.cos(np.radians(degrees)), rel=0.04)
    warned = [r.getMessage() for r in caplog.records if "slice areas" in r.getMessage()]
    if degrees >= 10:
        assert len(warned) == 1 and "tube.nii" in warned[0] and f"{degrees:.0f} degrees" in warned[0]
    else:
        assert not warned


def test_a_second_bone_and_a_solid_object_are_flagged(caplog):
    import logging

    vol, _ = make_phantom(PhantomSpec(voxel_mm=0.04, length_mm=2.0, metaphysis_length_mm=0.0), seed=0)
    a = vol.array
    gap = np.repeat(a[:, :, :1], 30, axis=2)  # 1.2 mm of soft tissue, beyond the 0.6 mm that keeps a fibula
    legs = Volume(np.ascontiguousarray(np.concatenate([a, gap, a[:, :, ::-1]], axis=2)), spacing=vol.spacing,
                  unit=vol.unit, meta={"source": "legs"})
    with caplog.at_level(logging.WARNING, logger="ctbone"):
        seg = segment(legs, AnalysisOptions())
    assert seg.info["left_out_particle_mm3"] > 0.9 * float(seg.bone.array.sum()) * 0.04 ** 3
    assert any("legs" in r.getMessage() and "one bone per scan" in r.getMessage() and "Bones along x: 1 = " in
               r.getMessage() for r in caplog.records)
    assert seg.info["marrow_pct_of_envelope"] > 40  # the limb analysed is a hollow shaft
    caplog.clear()
    # a solid rod denser than the cortex beside the bone: the threshold goes to the rod, which has no marrow
    yy, xx = np.mgrid[:a.shape[1], :a.shape[2] + 30]
    rod = (yy - a.shape[1] // 2) ** 2 + (xx - (a.shape[2] + 18)) ** 2 <= 8 ** 2
    dense = np.concatenate([a, gap], axis=2)
    dense[:, rod] = 2500.0
    with caplog.at_level(logging.WARNING, logger="ctbone"):
        seg = segment(Volume(dense, spacing=vol.spacing, unit=vol.unit, meta={"source": "rod"}), AnalysisOptions())
    assert seg.info["marrow_pct_of_envelope"] < 5
    assert any("rod" in r.getMessage() and "no marrow cavity" in r.getMessage() for r in caplog.records)


def test_despeckle_picks_the_bone_asked_for_counted_along_x():
    from ctbone.segment.cleanup import keep_bone_of_interest

    bone = np.zeros((20, 30, 60), bool)
    bone[2:18, 5:25, 40:55] = True  # the largest (4800 voxels), on the right
    bone[2:18, 5:20, 5:20] = True  # 3600 voxels (75 %), on the left: a second bone
    bone[2:6, 5:10, 25:30] = True  # 100 voxels in between: not bone-sized
    kw = dict(spacing_mm=(0.01,) * 3, min_particle_mm3=50e-6, near_mm=0.02)
    facts = {}
    left = keep_bone_of_interest(bone, bone_index=1, facts=facts, **kw)
    assert left.sum() == 3600 and left[10, 10, 10] and facts["bones"] == 2
    assert facts["bones_mm3"] == [pytest.approx(3600e-6), pytest.approx(4800e-6)] and facts["analysed_bone"] == 1
    right = keep_bone_of_interest(bone, bone_index=2, **kw)
    assert right.sum() == 4800 and right[10, 10, 50]
    assert np.array_equal(keep_bone_of_interest(bone, **kw), right)  # by default the largest
    with pytest.raises(ValueError, match="bone 3 asked for, but the scan holds 2"):
        keep_bone_of_interest(bone, bone_index=3, **kw)


@pytest.fixture(scope="module")
def shaft_in_a_wide_field():
    """A noisy shaft with a metaphysis in a field of view three times its width (air with noise and a soft
    tissue slab), a big particle far from the bone (dropped), one near it (kept) and a one-voxel speckle."""
    vol, _ = make_phantom(PhantomSpec(voxel_mm=0.03, length_mm=1.5, noise_hu=60), seed=0)
    nz, ny, nx = vol.shape
    rng = np.random.default_rng(1)
    field = rng.normal(-1000.0, 60.0, size=(nz, 3 * ny, 2 * nx + 20)).astype(np.float32)
    field[:, ny:2 * ny, 12:12 + nx] = vol.array
    field[:, 2 * ny + 5:2 * ny + 15, :] = rng.normal(40.0, 60.0, size=(nz, 10, field.shape[2]))  # soft tissue
    field[5:15, 5:12, -12:-4] = 1400  # far: dropped by the despeckle
    field[20:30, ny - 3:ny, 40:44] = 1400  # near: a fragment, kept
    field[40, 2 * ny + 30, 30] = 1400  # a speckle
    return Volume(field, spacing=vol.spacing, unit=vol.unit, meta={"source": "wide field"})


@pytest.mark.parametrize("options", [{}, {"threshold": 650.0}, {"roi_mm": "metaphyseal"}, {"bone": 1},
                                     {"calibration": (0.5, 12.0)}, {"sigma_vox": 1.2, "support_vox": 2}])
def test_the_bone_block_gives_what_the_whole_field_gives(shaft_in_a_wide_field, monkeypatch, options):
    # issue 7: in memory, only the rows and columns that can hold bone are smoothed and labelled
    import ctbone.segment as segment_module

    opts = AnalysisOptions(**options)
    cut = segment(shaft_in_a_wide_field, opts)
    monkeypatch.setattr(segment_module, "MIN_BLOCK_SAVING", 2.0)  # never cut a block: the whole field
    whole = segment(shaft_in_a_wide_field, opts)
    block = cut.info.pop("bone_block_yx")
    assert "bone_block_yx" not in whole.info
    (y0, y1), (x0, x1) = block
    # every particle is in the block (the despeckle sees them all); only air and soft tissue are left out
    assert (y1 - y0) * (x1 - x0) < 0.9 * shaft_in_a_wide_field.array[0].size
    assert cut.threshold == whole.threshold and cut.threshold_method == whole.threshold_method
    assert cut.info == whole.info  # crop, particles, long-axis tilt, growth plate...
    for name in ("bone", "envelope", "marrow", "cortex", "trabecular", "image", "raw_image"):
        a, b = getattr(cut, name), getattr(whole, name)
        assert np.array_equal(a.array, b.array) and a.origin == b.origin and a.unit == b.unit, name


@pytest.mark.parametrize("stored_integers", [False, True])
def test_a_handed_over_scan_gives_the_same_segmentation_and_goes(shaft_in_a_wide_field, stored_integers):
    import gc
    import weakref

    from ctbone.volume import HandedOver

    field = shaft_in_a_wide_field
    if stored_integers:  # as a DICOM series stores them: a few thousand distinct values, held as codes
        field = Volume(np.round(field.array), spacing=field.spacing, unit=field.unit, meta=dict(field.meta))
    kept = segment(field, AnalysisOptions())
    scan = Volume(field.array.copy(), spacing=field.spacing, unit=field.unit, meta=dict(field.meta))
    alive = weakref.ref(scan.array)
    handed = HandedOver(scan)
    del scan
    got = segment(handed, AnalysisOptions())
    gc.collect()
    assert alive() is None and "bone_block_yx" in got.info  # the block was copied out, the scan let go
    assert got.info == kept.info and got.threshold == kept.threshold
    for name in ("bone", "envelope", "marrow", "image", "raw_image"):
        a, b = getattr(got, name), getattr(kept, name)
        assert np.array_equal(a.array, b.array) and a.origin == b.origin, name
    # the segmentation's own crop is held as codes into its values when they are few (the noise of the phantom's
    # floats makes too many); the caller's scan is read where it is
    assert isinstance(got.calibrated_values(), CodedValues) == stored_integers
    assert np.shares_memory(kept.calibrated_values(), field.array)


def test_a_block_is_moved_within_the_scans_own_memory():
    from ctbone.segment.in_place import shrink_to_block

    rng = np.random.default_rng(0)
    for _ in range(100):
        shape = tuple(int(n) for n in rng.integers(1, 12, 3))
        array = rng.normal(size=shape).astype(np.float32)
        y0, x0 = (int(rng.integers(0, n)) for n in shape[1:])
        box = (slice(None), slice(y0, int(rng.integers(y0 + 1, shape[1] + 1))),
               slice(x0, int(rng.integers(x0 + 1, shape[2] + 1))))
        expected = array[box].copy()
        assert shrink_to_block(array, box)
        assert array.shape == expected.shape and array.flags.c_contiguous and np.array_equal(array, expected)
    # left as it is when something else may read it: a view, or not its own memory
    array = np.zeros((4, 5, 6), np.float32)
    view = array[1]
    assert not shrink_to_block(array, (slice(None), slice(1, 3), slice(0, 2))) and array.shape == (4, 5, 6)
    assert not shrink_to_block(view[None], (slice(None), slice(1, 3), slice(0, 2)))
    with pytest.raises(ValueError, match="all slices"):
        shrink_to_block(np.zeros((4, 5, 6), np.float32), (slice(1, 3), slice(None), slice(None)))


def test_a_handed_over_scan_is_cut_down_in_its_own_memory(shaft_in_a_wide_field, monkeypatch):
    import ctbone.segment as segment_module
    import ctbone.segment.in_place as in_place
    from ctbone.volume import HandedOver

    done = []

    def recorded(array, box):
        done.append(in_place.shrink_to_block(array, box))
        return done[-1]

    monkeypatch.setattr(in_place, "_REFERENCES_WHEN_ALONE", in_place._REFERENCES_WHEN_ALONE + 1)  # the wrapper's
    monkeypatch.setattr(segment_module, "shrink_to_block", recorded)
    kept = segment(shaft_in_a_wide_field, AnalysisOptions())
    assert done == []  # a scan its caller holds is only read
    got = segment(HandedOver(Volume(shaft_in_a_wide_field.array.copy(), spacing=shaft_in_a_wide_field.spacing,
                                    unit=shaft_in_a_wide_field.unit, meta=dict(shaft_in_a_wide_field.meta))),
                  AnalysisOptions())
    assert done == [True]
    assert got.info == kept.info and got.threshold == kept.threshold
    for name in ("bone", "envelope", "marrow", "image", "raw_image"):
        a, b = getattr(got, name), getattr(kept, name)
        assert np.array_equal(a.array, b.array) and a.origin == b.origin, name


@pytest.mark.parametrize("nx", [1, 7, 8, 13])
def test_packed_masks_unpack_to_themselves_and_combine_without_their_padding(nx):
    from ctbone.segment.packed import PackedMask

    rng = np.random.default_rng(nx)
    a, b = rng.random((3, 4, nx)) > 0.5, rng.random((3, 4, nx)) > 0.3
    pa, pb = PackedMask.of(a), PackedMask.of(b)
    assert pa.bits.nbytes == 3 * 4 * -(-nx // 8)
    got = pa.unpacked()
    assert got.dtype == bool and np.array_equal(got, a) and not np.shares_memory(got, pa.bits)
    assert np.array_equal(pa.and_not(pb).unpacked(), a & ~b)  # ~b's padding bits are ones, a's zeros
    with pytest.raises(ValueError, match="shapes"):
        pa.and_not(PackedMask.of(np.zeros((3, 4, nx + 1), bool)))


def test_the_segmentations_masks_made_when_asked_are_the_compartments(phantom):
    seg = segment(phantom[0], AnalysisOptions())
    bone, envelope, marrow = (getattr(seg, n).array.astype(bool) for n in ("bone", "envelope", "marrow"))
    assert envelope.any() and marrow.any() and (marrow <= envelope).all()
    assert np.array_equal(seg.cortex.array, (envelope & ~marrow).view(np.uint8))
    assert np.array_equal(seg.trabecular.array, (bone & marrow).view(np.uint8))
    assert seg.packed_envelope.bits.nbytes * 7 < envelope.nbytes  # held as bits
