"""Compiled helpers of the lesion stage equal the numpy formulations they replace."""

import warnings

import numpy as np
import pytest

from ctbone.measure.lesions_geometry import _open_faces
from ctbone.measure.lesions_polar import PolarFrame


def test_open_faces_equal_the_rolled_formulation():
    rng = np.random.default_rng(0)
    for _ in range(10):
        shape = tuple(int(n) for n in rng.integers(1, 10, 3))
        inside = rng.random(shape) < 0.6
        src = inside & (rng.random(shape) < 0.7)
        for axis in range(3):
            for shift in (1, -1):
                neighbour_out = ~np.roll(inside, -shift, axis=axis)
                edge = [slice(None)] * 3
                edge[axis] = slice(-1, None) if shift == 1 else slice(0, 1)
                neighbour_out[tuple(edge)] = False  # beyond the array is not a face
                expected = np.nonzero(src & neighbour_out)
                got = _open_faces(src, inside, axis, shift)
                assert all(np.array_equal(a, b) for a, b in zip(expected, got))


def test_between_equals_comparisons_with_the_broadcast_tables():
    rng = np.random.default_rng(2)
    bins = rng.integers(0, 40, (5, 8, 9)).astype(np.int16)
    frame = PolarFrame(bins, 40, rng.uniform(0, 0.09, (5, 2)), (0.01, 0.012))
    # the radius the frame computes where asked, against numpy's on the grid
    yy = np.arange(8)[None, :, None] * 0.01 - frame.centres_yx_mm[:, 0, None, None]
    xx = np.arange(9)[None, None, :] * 0.012 - frame.centres_yx_mm[:, 1, None, None]
    radius = np.sqrt(yy * yy + xx * xx).astype(np.float32)
    assert np.array_equal(frame.radius_mm, radius)
    lower = rng.uniform(0, 0.05, (5, 40)).astype(np.float32) + 0.013  # float32 arithmetic, as on the volumes
    upper = rng.uniform(0.05, 0.12, (5, 40)).astype(np.float32) - 0.021
    z = np.arange(5)[:, None, None]
    lower_v, upper_v = lower[z, bins], upper[z, bins]  # the tables broadcast to the voxels
    inside = (radius > lower_v) & (radius <= upper_v)
    assert 0 < inside.sum() < inside.size
    assert np.array_equal(frame.between(lower, upper), inside)
    assert np.array_equal(frame.between(upper=upper), radius <= upper_v)
    assert np.array_equal(frame.between(lower=lower), radius > lower_v)
    # restricted to a mask: the radius computed only there, the same voxels as the AND
    within = rng.random(bins.shape) < 0.4
    assert np.array_equal(frame.between(lower, upper, within=within), within & inside)
    assert np.array_equal(frame.between(upper=upper, within=within.view(np.uint8)), within & (radius <= upper_v))
    with pytest.raises(ValueError, match="shape"):
        frame.between(lower, upper, within=within[:2])
    # per-bin extremes of the radius, and the cells holding a voxel, against plain loops
    mask = rng.random(bins.shape) < 0.3
    top = np.full((5, 40), -np.inf)
    for (zz, y, x) in np.argwhere(mask):
        top[zz, bins[zz, y, x]] = max(top[zz, bins[zz, y, x]], float(radius[zz, y, x]))
    top[~np.isfinite(top)] = np.nan
    assert np.array_equal(frame.radius_per_bin(mask, reduce="max"), frame._bridge_sparse_bins(top, "max"),
                          equal_nan=True)
    assert np.array_equal(frame.bins_holding(mask),
                          np.isfinite(frame._bridge_sparse_bins(np.where(np.isfinite(top), 1.0, np.nan), "max")))


def test_cortex_shell_masks_equal_the_masks_they_replace():
    from ctbone.measure.lesions_polar import CortexShell

    rng = np.random.default_rng(5)
    bins = rng.integers(0, 40, (6, 8, 9)).astype(np.int16)
    frame = PolarFrame(bins, 40, rng.uniform(0, 0.09, (6, 2)), (0.01, 0.012))
    outer = rng.uniform(0.04, 0.12, (6, 40)).astype(np.float32) - 0.005
    inner = rng.uniform(0.0, 0.08, (6, 40)).astype(np.float32) + 0.005  # above outer in some cells
    inner[2, :7] = np.inf  # no endosteal model there
    analysed = np.array([True, True, False, True, True, True])
    cortex = CortexShell(frame, inner, outer, analysed)
    within = rng.random(bins.shape) < 0.5
    # as the lesion stage made and held them before
    expected = frame.between(upper=outer)
    shell = frame.between(lower=inner, within=expected) & analysed[:, None, None]
    assert 0 < shell.sum() < expected.sum() < expected.size
    assert np.array_equal(cortex.expected(), expected)
    assert np.array_equal(cortex.expected(within=within), expected & within)
    assert np.array_equal(cortex.shell(), shell)
    assert np.array_equal(cortex.shell(within=within), shell & within)
    assert np.array_equal(cortex.beyond(within=within), ~expected & within)
    assert np.array_equal(cortex.marrow(), frame.between(upper=inner, within=expected))
    assert not cortex.shell()[2].any()
    # on a box: the whole grid's masks there
    box = (slice(1, 5), slice(2, 7), slice(3, 9))
    assert np.array_equal(cortex.on_box(box).expected(), expected[box])
    assert np.array_equal(cortex.on_box(box).shell(within=within[box]), (shell & within)[box])
    assert np.array_equal(frame.on_box(box).on_box((slice(1, 3), slice(1, 4), slice(2, 5))).radius_mm,
                          frame.radius_mm[2:4, 3:6, 5:8])


@pytest.mark.parametrize("shape, sigma", [((14, 17, 19), 1.5), ((9, 40, 33), 1.5), ((1, 12, 15), 1.5),
                                          ((6, 2, 25), 1.5), ((5, 11, 1), 1.0), ((12, 9, 10), 0.6),
                                          ((30, 20, 24), 3.0)])
def test_surface_normals_kept_at_the_boundary_equal_the_gradient_of_the_smoothed_mask(shape, sigma):
    # the filter is computed only in the band the differences read: the normals must be those of the whole
    # smoothed volume bit for bit, on shapes thinner than the kernel along an axis too
    from scipy import ndimage

    from ctbone.measure.lesions_geometry import SurfaceNormals

    rng = np.random.default_rng(sum(shape))
    mask = rng.random(shape) < 0.5
    if min(shape) > 2:
        mask = ndimage.binary_closing(mask, iterations=2)
    spacing = (0.02, 0.01, 0.015)
    normals = SurfaceNormals(mask, spacing_mm=spacing, sigma_vox=sigma)
    boundary = mask & ~ndimage.binary_erosion(mask, border_value=1)  # a face neighbour outside, in the array
    index = np.nonzero(boundary)
    smooth = ndimage.gaussian_filter(mask.astype(np.float32), sigma, mode="nearest").astype(np.float64)
    # np.gradient's differences (one-sided at the edges); none along an axis one voxel long
    grads = -np.stack([np.gradient(smooth, step, axis=axis)[index] if n > 1 else np.zeros(len(index[0]))
                       for axis, (n, step) in enumerate(zip(shape, spacing))])
    expected = grads / np.maximum(np.sqrt((grads ** 2).sum(axis=0)), 1e-12)
    assert normals._flat.size == boundary.sum()
    np.testing.assert_array_equal(normals.at(index), expected)
    # a voxel deep inside has no stored normal: asking for it is a bug, not a silent zero
    inner = np.nonzero(mask & ~boundary)
    with pytest.raises(ValueError):
        normals.at(tuple(i[:1] for i in inner))


def test_flood_in_slices_equals_in_slice_labels_holding_a_seed():
    from scipy import ndimage

    from ctbone.segment.flood import flood_in_slices

    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    rng = np.random.default_rng(5)
    for _ in range(8):
        shape = tuple(int(n) for n in rng.integers(1, 30, 3))
        allowed = rng.random(shape) < rng.uniform(0.3, 0.7)
        seeds = rng.random(shape) < 0.02
        labels, n = ndimage.label(allowed, structure=in_plane)
        hit = np.zeros(n + 1, bool)
        hit[labels[seeds & allowed]] = True
        hit[0] = False
        assert np.array_equal(flood_in_slices(allowed, seeds, connectivity=4), hit[labels])


@pytest.mark.parametrize("connectivity", [6, 26])
def test_components_on_the_box_equal_whole_array_labels(connectivity):
    import cc3d

    from ctbone.measure.lesions_geometry import components

    rng = np.random.default_rng(connectivity)
    mask = np.zeros((20, 30, 40), bool)
    mask[4:15, 6:25, 9:33] = rng.random((11, 19, 24)) < 0.3
    labels, n = components(mask, connectivity=connectivity)
    expected, n_expected = cc3d.connected_components(mask.astype(np.uint8), connectivity=connectivity, return_N=True)
    assert n == n_expected > 1 and np.array_equal(labels, expected)
    empty, n_empty = components(np.zeros((3, 4, 5), bool))
    assert n_empty == 0 and not empty.any() and empty.shape == (3, 4, 5)


@pytest.mark.parametrize("connectivity", [6, 26])
def test_keep_large_keeps_what_dust_keeps(connectivity):
    import cc3d

    from ctbone.measure.lesions_geometry import keep_large

    rng = np.random.default_rng(connectivity + 1)
    mask = np.zeros((20, 30, 40), bool)
    mask[3:18, 2:27, 5:38] = rng.random((15, 25, 33)) < 0.25
    for min_voxels in (1, 2.5, 4, 30):
        got = keep_large(mask, min_voxels=min_voxels, connectivity=connectivity)
        expected = cc3d.dust(mask.astype(np.uint8), threshold=int(np.ceil(min_voxels)), connectivity=connectivity) > 0
        assert np.array_equal(got, expected)
        assert got.sum() < mask.sum() or min_voxels == 1
    assert not keep_large(np.zeros((3, 4, 5), bool), min_voxels=2).any()


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_large_components_labelled_slab_by_slab_equal_the_whole_box(connectivity):
    # slabs as thin as one slice: components joined across every face, diagonally too for 18 and 26
    import cc3d

    from ctbone.segment.large_components import large_components

    rng = np.random.default_rng(connectivity)
    mask = rng.random((23, 19, 17)) < 0.3
    mask[:, 9, 9] = True  # a rod through every slab
    labels = cc3d.connected_components(mask.view(np.uint8), connectivity=connectivity)
    sizes = np.bincount(labels.ravel())
    for min_voxels in (1, 4, 40):
        keep = sizes >= min_voxels
        keep[0] = False
        for slab_voxels in (1, 3 * 19 * 17, 10 ** 9):
            got = large_components(mask, min_voxels=min_voxels, connectivity=connectivity, slab_voxels=slab_voxels)
            assert np.array_equal(got, keep[labels]), (min_voxels, slab_voxels)
    assert large_components(mask, min_voxels=23, connectivity=connectivity, slab_voxels=1)[:, 9, 9].all()
    with pytest.raises(ValueError, match="connectivity"):
        large_components(mask, min_voxels=1, connectivity=4)


def test_components_in_a_small_box_leave_the_rest_false():
    # only the mask's box is labelled and written: freshly freed memory full of True must not show through
    # around it (an uninitialised output cleared outside the box was tried)
    from ctbone.segment.large_components import large_components, largest_component

    mask = np.zeros((9, 10, 11), bool)
    mask[3:6, 4:7, 5:9] = True
    mask[4, 5, 10] = True  # a speck touching no face of the array
    for _ in range(3):
        junk = np.ones(mask.shape, bool)
        del junk
        for got in (large_components(mask, min_voxels=2, slab_voxels=1), largest_component(mask, slab_voxels=1)):
            assert got.sum() == 36 and got[3:6, 4:7, 5:9].all()


@pytest.mark.parametrize("connectivity", [6, 26])
def test_largest_component_slab_by_slab_is_cc3ds_largest_label(connectivity):
    # the largest joined across slabs (a comb whose teeth meet only in the last slab), and of two equal ones
    # the first in raster order, as argmax over the whole box's labels picks
    import cc3d

    from ctbone.segment.large_components import largest_component

    mask = np.zeros((12, 9, 14), bool)
    mask[:, 1, 1] = mask[:, 1, 4] = mask[:, 1, 7] = True  # three teeth, 12 voxels each
    mask[11, 1, 1:8] = True  # joined in the last slice only: 40 voxels
    mask[2:7, 6:8, 2:6] = True  # 40 voxels too, its first voxel later in raster order: the tie goes to the comb
    mask[0, 8, 13] = True  # a speck
    rng = np.random.default_rng(connectivity)
    specks = mask | (rng.random(mask.shape) < 0.05)
    for m in (mask, specks, np.zeros((3, 4, 5), bool)):
        labels = cc3d.connected_components(m.view(np.uint8), connectivity=connectivity)
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        expected = (labels == sizes.argmax()) if sizes.max() > 0 else np.zeros(m.shape, bool)
        for slab_voxels in (1, 3 * 9 * 14, 10 ** 9):
            got = largest_component(m, connectivity=connectivity, slab_voxels=slab_voxels)
            assert np.array_equal(got, expected), slab_voxels
    comb = largest_component(mask, connectivity=connectivity, slab_voxels=1)
    assert comb[:, 1, 1].all() and comb.sum() == 40 and not comb[2:7, 6:8, 2:6].any()


def test_components_come_in_the_smallest_type_that_holds_their_count():
    import cc3d

    from ctbone.measure.lesions_geometry import components

    few = np.zeros((5, 10, 10), bool)
    few[1, 1, 1] = few[3, 7, 7] = True
    labels, n = components(few)
    assert n == 2 and labels.dtype == np.uint8
    # 300 isolated voxels: one label more than a byte holds
    many = np.zeros((6, 20, 20), bool)
    many[::2, ::2, ::2] = True
    many.flat[np.flatnonzero(many)[300:]] = False
    labels, n = components(many, connectivity=6)
    expected = cc3d.connected_components(many.astype(np.uint8), connectivity=6)
    assert n == 300 and labels.dtype == np.uint16 and np.array_equal(labels, expected)


def test_label_boxes_equal_find_objects():
    from scipy import ndimage

    from ctbone.measure.lesions_geometry import label_boxes

    rng = np.random.default_rng(11)
    for _ in range(40):
        shape = tuple(int(s) for s in rng.integers(1, 25, 3))
        labels = ((rng.random(shape) < rng.choice([0.002, 0.05, 0.3])) * rng.integers(1, 9, shape)).astype(np.uint16)
        n = int(rng.integers(0, 11))  # below, at and above the largest label; 0: every label, as find_objects
        for margin in (0, 2):
            expected = [None if sl is None else
                        tuple(slice(max(0, s.start - margin), min(size, s.stop + margin)) for s, size in zip(sl, shape))
                        for sl in ndimage.find_objects(labels, max_label=n)]
            assert label_boxes(labels, n, margin_vox=margin) == expected


def test_cortex_share_around_the_bone_is_fitted_only_where_the_intact_bins_surround_it():
    from ctbone.measure.lesions_lytic import _expected_around, _smooth_around

    nb = 402
    theta = 2 * np.pi * np.arange(nb) / nb
    share = 5.0 + 2.0 * np.cos(2 * theta)  # an elliptic cortex's voxels per angle bin
    mass = 0.9 * share
    # intact all around but a 90 degree lesion: the fit recovers the share over the lesion
    good = ~((theta > 1.0) & (theta < 1.0 + np.pi / 2))
    np.testing.assert_allclose(_smooth_around(share, good), share, atol=1e-9)
    np.testing.assert_allclose(_expected_around(mass, share, good), mass, atol=1e-9)
    # intact on an arc only (19 bins together: a scan that is no long bone): no extrapolated share, and the
    # expected masses stay within the intact ones (a fit there reached 10^7 times the data)
    good = np.zeros(nb, bool)
    good[100:119] = True
    assert _smooth_around(share, good) is None
    expected = _expected_around(mass, share, good)
    assert np.all(expected >= mass[good].min() - 1e-9) and np.all(expected <= mass[good].max() + 1e-9)


def _angle_bins_by_formula(centres, yy, xx, n_bins, bins):
    """The formula, one atan2 a voxel, compiled as the kernel was before it followed rows (numpy's vectorised
    arctan2 rounds otherwise: 4 voxels in 5000 land in the next bin on these frames)."""
    for z in range(bins.shape[0]):
        for y in range(bins.shape[1]):
            dy = yy[y] - centres[z, 0]
            for x in range(bins.shape[2]):
                dx = xx[x] - centres[z, 1]
                bins[z, y, x] = np.int64(np.floor((np.arctan2(dy, dx) + np.pi) / (2 * np.pi) * n_bins)) % n_bins


def test_angle_bins_equal_the_atan2_formula_also_at_boundaries():
    from numba import njit

    from ctbone.measure.lesions_polar import polar_frame

    formula = njit(_angle_bins_by_formula)
    rng = np.random.default_rng(7)
    for trial in range(60):
        ny, nx = int(rng.integers(8, 50)), int(rng.integers(8, 50))
        spacing = (0.01, *[float(rng.choice([0.01, 0.00425, 0.05]))] * 2)
        envelope = np.zeros((6, ny, nx), bool)
        # a centred, symmetric shape puts slice centres exactly on grid rows and columns: angles on boundaries
        if trial % 2:
            envelope[:, 2:ny - 2, 2:nx - 2] = True
        else:
            envelope[:, rng.integers(0, ny // 2):, rng.integers(0, nx // 2):] = True
        frame = polar_frame(envelope, spacing_mm=spacing)
        yy, xx = np.arange(ny) * spacing[1], np.arange(nx) * spacing[2]
        want = np.empty(envelope.shape, np.int16)
        formula(np.ascontiguousarray(frame.centres_yx_mm, np.float64), yy, xx, frame.n_bins, want)
        np.testing.assert_array_equal(frame.bin_index, want)


@pytest.mark.parametrize("spacing", [(0.01, 0.01, 0.01), (0.02, 0.015, 0.01)])
def test_whole_surface_area_from_the_boundary_voxels_equals_the_face_scans(spacing):
    # the periosteal area: the same faces in the same order as surface_area_mm2(inside, inside), so the same float
    from scipy import ndimage

    from ctbone.measure.lesions_geometry import surface_area_mm2, surface_normals

    rng = np.random.default_rng(4)
    zz, yy, xx = np.indices((30, 33, 28))
    tube = (yy - 16) ** 2 + (xx - 13.5) ** 2 < 11.0 ** 2
    blobs = ndimage.binary_opening(rng.random((17, 21, 9)) < 0.6)
    for inside in (tube, blobs, np.ones((4, 5, 6), bool)):
        normals = surface_normals(inside, spacing_mm=spacing)
        assert normals.whole_area_mm2(inside) == surface_area_mm2(inside, inside, spacing_mm=spacing, normals=normals)
    assert normals.whole_area_mm2(np.ones((4, 5, 6), bool)) == 0.0  # no face inside the array is open
    with pytest.raises(ValueError, match="shape"):
        normals.whole_area_mm2(tube)


def test_masked_median_equals_numpy_median_of_the_gathered_values():
    from ctbone.measure.masked_median import masked_median

    rng = np.random.default_rng(5)
    specials = np.array([-0.0, 0.0, 1e-45, -1e-45, np.inf, -np.inf, 3e38, -3e38, 1e-40], np.float32)
    for trial in range(200):
        shape = tuple(int(n) for n in rng.integers(1, 9, 3))
        kind = trial % 4
        if kind == 0:
            values = rng.normal(500, 300, shape).astype(np.float32)
        elif kind == 1:  # ties: many equal values, both middle ranks in one bin or in two
            values = rng.integers(-3, 4, shape).astype(np.float32)
        elif kind == 2:  # signed zeros, subnormals, infinities: the bit patterns' order must be the numbers'
            values = rng.choice(specials, shape)
        else:
            values = rng.normal(0, 1, shape).astype(np.float32)
            values.flat[int(rng.integers(values.size))] = np.nan
        mask = rng.random(shape) < rng.random()
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = float(np.median(values[mask])) if mask.any() else float("nan")
        got = masked_median(values, mask)
        assert (np.isnan(want) and np.isnan(got)) or got == want, (trial, got, want)
    # a strided crop is read in place; other types go through numpy
    values = rng.normal(0, 1, (20, 30, 40)).astype(np.float32)
    mask = rng.random(values.shape) < 0.4
    crop = (slice(2, 18), slice(3, None), slice(None, None, 2))
    assert masked_median(values[crop], mask[crop]) == float(np.median(values[crop][mask[crop]]))
    assert masked_median(values.astype(np.float64), mask) == float(np.median(values.astype(np.float64)[mask]))
    with pytest.raises(ValueError, match="shape"):
        masked_median(values, mask[1:])


def test_main_sections_equal_the_in_slice_labels_of_scipy():
    from scipy import ndimage

    from ctbone.measure.lesions import MAIN_SECTION_FRACTION, _main_sections

    rng = np.random.default_rng(6)
    for _ in range(100):  # small random slices: many components of equal size, where the first must win
        env = rng.random((3, 12, 15)) < rng.uniform(0.2, 0.6)
        want_env, want_ok = np.zeros_like(env), np.zeros(3, bool)
        for z in range(3):
            labels, n = ndimage.label(env[z], structure=np.ones((3, 3), bool))
            if n:
                sizes = np.bincount(labels.ravel())
                sizes[0] = 0
                want_env[z] = labels == sizes.argmax()
                want_ok[z] = sizes.max() >= MAIN_SECTION_FRACTION * sizes.sum()
        got_env, got_ok = _main_sections(env)
        assert np.array_equal(got_env, want_env) and np.array_equal(got_ok, want_ok)
