"""The compiled / shift-based kernels equal the scipy calls they replace, bit for bit."""

import numpy as np
import pytest
from scipy import ndimage

from ctbone.segment.envelope import fill_slices
from ctbone.segment.morphology import dilate_cross, erode_cross
from ctbone.segment.smooth import gaussian_filter_nearest, gaussian_smooth
from ctbone.volume import bounding_box

# scipy's in-slice fill: the 3x3 middle plane, so background is 8-connected within a slice
_IN_SLICE = np.zeros((3, 3, 3), bool)
_IN_SLICE[1] = True


@pytest.mark.parametrize("seed", range(6))
def test_fill_slices_equals_scipy_fill_holes(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(1, 25, 3))
    mask = rng.random(shape) < rng.uniform(0.2, 0.8)
    assert np.array_equal(fill_slices(mask), ndimage.binary_fill_holes(mask, structure=_IN_SLICE))


def test_fill_slices_fills_a_ring_but_not_an_open_c():
    ring = np.zeros((2, 9, 9), bool)
    ring[:, 2:7, 2] = ring[:, 2:7, 6] = ring[:, 2, 2:7] = ring[:, 6, 2:7] = True
    ring[1, 6, 4] = False  # slice 1: a gap in the ring lets the inside out
    filled = fill_slices(ring)
    assert filled[0, 4, 4] and not filled[1, 4, 4]


@pytest.mark.parametrize("ndim", [2, 3])
def test_cross_dilation_and_erosion_equal_scipy(ndim):
    rng = np.random.default_rng(ndim)
    for _ in range(10):
        shape = tuple(int(n) for n in rng.integers(1, 12, ndim))
        mask = rng.random(shape) < rng.uniform(0.1, 0.9)
        assert np.array_equal(dilate_cross(mask), ndimage.binary_dilation(mask))
        assert np.array_equal(erode_cross(mask), ndimage.binary_erosion(mask))
        for n in (2, 3):
            assert np.array_equal(dilate_cross(mask, iterations=n), ndimage.binary_dilation(mask, iterations=n))
            assert np.array_equal(erode_cross(mask, iterations=n), ndimage.binary_erosion(mask, iterations=n))
        # a strided view (a box of a larger mask) is read in place, with the same result
        view = np.pad(mask, 2)[(slice(1, -1),) * ndim][(slice(None, None, 2),) + (slice(None),) * (ndim - 1)]
        assert np.array_equal(dilate_cross(view), ndimage.binary_dilation(view))
        assert np.array_equal(erode_cross(view), ndimage.binary_erosion(view))
    with pytest.raises(ValueError):  # scipy's "until nothing changes" is not what 0 would mean here
        dilate_cross(mask, iterations=0)


def test_a_box_of_a_volume_is_read_in_place_and_its_edge_is_the_edge():
    from ctbone.segment.morphology import _contiguous_base, erode_by

    rng = np.random.default_rng(7)
    volume = rng.random((9, 10, 11)) < 0.5
    box = volume[2:7, 1:9, 3:10]
    base, origin = _contiguous_base(box)
    assert base is volume and origin == (2, 1, 3)  # no copy: the kernel reads the volume around the box
    # the voxels just outside the box are the volume's, yet they must read as beyond the mask (scipy on a copy)
    assert np.array_equal(dilate_cross(box), ndimage.binary_dilation(box.copy()))
    assert np.array_equal(erode_cross(box), ndimage.binary_erosion(box.copy()))
    ball = ndimage.generate_binary_structure(3, 2)
    assert np.array_equal(erode_by(box, ball, border_value=True),
                          ndimage.binary_erosion(box.copy(), ball, border_value=1))
    # a view of a view has the volume as its base too; strided and reordered views are copied
    assert _contiguous_base(box[1:3])[0] is volume and _contiguous_base(box[1:3])[1] == (3, 1, 3)
    for other in (volume[::2], volume.transpose(2, 1, 0), np.arange(990).reshape(9, 10, 11)[1:5, 2:4] > 3):
        base, origin = _contiguous_base(other)
        assert base.flags.c_contiguous and origin == (0, 0, 0) and np.array_equal(base, other)


@pytest.mark.parametrize("sigma", [0.5, 0.8, 1.5])
def test_gaussian_equals_scipy_nearest(sigma):
    rng = np.random.default_rng(3)
    image = (rng.normal(size=(9, 13, 17)) * 300 + 100).astype(np.float32)
    assert np.array_equal(gaussian_filter_nearest(image, sigma),
                          ndimage.gaussian_filter(image, sigma=sigma, mode="nearest"))
    # support 1: the 3-tap kernel of the segmentation's smoothing
    assert np.array_equal(gaussian_smooth(image, sigma_vox=sigma, support_vox=1),
                          ndimage.gaussian_filter(image, sigma=sigma, truncate=1.49 / sigma, mode="nearest"))
    # a mask is read as its float32 copy would be; the input is left as it was (the passes run in place
    # on the result only)
    mask = rng.random((11, 8, 21)) < 0.4
    before = mask.copy()
    assert np.array_equal(gaussian_filter_nearest(mask, sigma),
                          ndimage.gaussian_filter(mask.astype(np.float32), sigma=sigma, mode="nearest"))
    assert np.array_equal(mask, before)
    kept = image.copy()
    gaussian_filter_nearest(image, sigma)
    assert np.array_equal(image, kept)
    # rows and columns asked for: the whole result's, cut out, from a strided view too
    whole = ndimage.gaussian_filter(image, sigma=sigma, mode="nearest")
    for box in [(slice(2, 9), slice(0, 17)), (slice(0, 13), slice(5, 6)), (slice(12, 13), slice(1, 16))]:
        assert np.array_equal(gaussian_filter_nearest(image, sigma, yx_box=box), whole[(slice(None), *box)])
    view = image[:, 1:12, ::2]
    assert np.array_equal(gaussian_smooth(view, sigma_vox=sigma, support_vox=1, yx_box=(slice(1, -1), slice(2, 7))),
                          ndimage.gaussian_filter(view, sigma=sigma, truncate=1.49 / sigma,
                                                  mode="nearest")[:, 1:-1, 2:7])
    assert gaussian_filter_nearest(image, sigma, yx_box=(slice(4, 4), slice(None))).shape == (9, 0, 17)


@pytest.mark.parametrize("border_value", [False, True])
def test_erode_by_a_ball_equals_scipy(border_value):
    from ctbone.segment.morphology import erode_by

    rng = np.random.default_rng(7)
    offsets = np.mgrid[-2:3, -1:2, -1:2]
    ball = sum((o * s) ** 2 for o, s in zip(offsets, (0.5, 1.0, 1.2))) <= 1.5 ** 2
    # and one reaching 3 voxels along x (the compiled kernel's general shift, besides its -1/0/+1 loops)
    wide = np.mgrid[-1:2, -1:2, -3:4]
    long_x = sum((o * s) ** 2 for o, s in zip(wide, (1.0, 1.0, 0.5))) <= 1.5 ** 2
    for structure in (ball, long_x):
        for _ in range(8):
            mask = rng.random(tuple(int(n) for n in rng.integers(1, 14, 3))) < 0.8
            assert np.array_equal(erode_by(mask, structure, border_value=border_value),
                                  ndimage.binary_erosion(mask, structure=structure, border_value=int(border_value)))


def test_local_half_max_equals_the_maximum_filter_formulation():
    # the definition written with scipy's maximum filter (as first implemented), against the compiled kernel
    import ctbone.segment.local_threshold as lt

    rng = np.random.default_rng(11)
    for _ in range(6):
        shape = tuple(int(n) for n in rng.integers(5, 30, 3))
        image = (ndimage.gaussian_filter(rng.normal(size=shape) * 400, 1.0)
                 + rng.normal(size=shape) * 20).astype(np.float32)
        region = rng.random(shape) < 0.7
        region[:2] = False
        threshold = float(np.percentile(image, 90))
        background, sd = lt.background_level(image[region])
        floor = min(background + max(lt.FLOOR_FRACTION * (threshold - background), lt.FLOOR_NOISE_SD * sd), threshold)
        local = ndimage.maximum_filter(image, size=5, mode="nearest") + np.float32(background)
        local = np.clip(local * np.float32(0.5), np.float32(floor), np.float32(threshold))
        expected = region & (image > local)
        assert np.array_equal(lt.local_half_max_mask(image, region, global_threshold=threshold)[0], expected)
        # the image as a function of a box (the smoothed image made where it is read): only the region's box
        asked = []
        got, facts = lt.local_half_max_mask(lambda box: asked.append(box) or image[box].copy(), region,
                                            global_threshold=threshold)
        assert np.array_equal(got, expected) and facts["background"] == background
        assert asked == [bounding_box(region, margin_vox=lt.LOCAL_RADIUS_VOX)]


def test_background_level_of_a_masked_image_equals_that_of_its_gathered_values():
    import ctbone.segment.local_threshold as lt

    rng = np.random.default_rng(11)
    for _ in range(8):
        shape = tuple(int(n) for n in rng.integers(4, 40, 3))
        image = (rng.normal(200, 60, shape) + 1500 * (rng.random(shape) < 0.2)).astype(np.float32)
        region = rng.random(shape) < rng.uniform(0.2, 0.9)
        kept = image.copy()
        # the same floats, not close ones: the noise SD sets the local threshold's floor
        assert lt.background_level(image, region) == lt.background_level(image[region])
        assert np.array_equal(image, kept)  # the image is read, never reordered
    flat = np.full((3, 4, 5), 7.0, np.float32)
    assert lt.background_level(flat, flat > 0) == lt.background_level(flat.ravel()) == (7.0, 0.0)


def test_label_counts_equal_bincount_and_refuse_a_short_n():
    from ctbone.segment.labels import label_counts

    labels = np.random.default_rng(4).integers(0, 9, (5, 6, 7)).astype(np.uint32)
    assert np.array_equal(label_counts(labels), np.bincount(labels.ravel()))
    assert np.array_equal(label_counts(labels, 12), np.bincount(labels.ravel(), minlength=13))
    with pytest.raises(ValueError):
        label_counts(labels, 3)


def _channels_whole_array(cavity, envelope, spacing_mm, radius_mm, surface_mm):
    """The canal rule on the whole array at once: the reference for the slab-wise `through_cortex_channels`."""
    from ctbone.segment.envelope import near_outside, open_mm

    wide = open_mm(cavity, spacing_mm=spacing_mm, radius_mm=radius_mm)
    narrow = cavity & ~wide
    surface = near_outside(envelope, spacing_mm=spacing_mm, distance_mm=surface_mm)
    labels, n = ndimage.label(narrow, structure=np.ones((3, 3, 3)))
    keep = np.zeros(n + 1, bool)
    keep[np.unique(labels[surface & narrow])] = True
    keep[np.unique(labels[dilate_cross(dilate_cross(wide & surface)) & narrow])] = False
    keep[0] = False
    return keep[labels]


@pytest.mark.parametrize("seed", range(3))
def test_canals_found_slab_by_slab_equal_the_whole_array(seed):
    from ctbone.segment.compartments import through_cortex_channels
    from ctbone.segment.envelope import near_outside

    # a tube 2 mm long at 10 um: canals of random width (some wider than the 70 um limit) in separate slabs,
    # two running 0.18 mm along z through the cortex (so their slabs must grow), noise spikes of the cavity
    rng = np.random.default_rng(seed)
    spacing = (0.01, 0.01, 0.01)
    zz, yy, xx = np.meshgrid(np.arange(200) * 0.01, *(np.arange(-26, 27) * 0.01,) * 2, indexing="ij")
    rr = np.hypot(yy, xx)
    envelope = rr <= 0.24
    cavity = rr <= 0.15
    for z0, slope in ((0.3, 0.0), (0.9, 2.0), (1.5, -2.0), (1.8, 0.0)):  # slope: mm along z per mm outwards
        angle, radius = rng.uniform(0, 2 * np.pi), rng.uniform(0.01, 0.06)
        along = xx * np.cos(angle) + yy * np.sin(angle)
        across = -xx * np.sin(angle) + yy * np.cos(angle)
        cavity |= envelope & (along > 0) & (np.hypot(across, zz - z0 - slope * along) <= radius)
    cavity |= (rr > 0.14) & (rr < 0.17) & (rng.random(rr.shape) < 0.05)  # endosteal roughness
    expected = _channels_whole_array(cavity, envelope, spacing, 0.035, 0.015)
    surface = near_outside(envelope, spacing_mm=spacing, distance_mm=0.015)
    found = through_cortex_channels(cavity, surface, spacing_mm=spacing, radius_mm=0.035)
    assert expected.any()
    assert np.array_equal(found, expected)


def test_mask_as_bool_views_stored_masks_and_copies_the_rest():
    from ctbone.volume import mask_as_bool

    stored = np.zeros((3, 4, 5), np.uint8)
    stored[1, 2, 3] = 1
    view = mask_as_bool(stored)
    assert view.dtype == bool and np.shares_memory(view, stored) and int(view.sum()) == 1
    counts = stored * 2  # not 0/1: a comparison-free view would read 2 as an invalid bool
    copy = mask_as_bool(counts)
    assert copy.dtype == bool and not np.shares_memory(copy, counts) and int(copy.sum()) == 1
    strided = stored[:, :, ::2]
    assert not np.shares_memory(mask_as_bool(strided), stored)
    flags = stored.astype(bool)
    assert mask_as_bool(flags) is flags


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32])
def test_lookup_equals_numpy_fancy_indexing(dtype):
    from ctbone.segment.labels import lookup

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 200, (7, 150, 90)).astype(dtype)  # more voxels than one chunk of the kernel
    for table in (rng.random(200) < 0.5, rng.integers(0, 9, 200).astype(np.uint8), rng.random(200)):
        got = lookup(table, labels)
        assert got.dtype == table.dtype and np.array_equal(got, table[labels])
    with pytest.raises(IndexError):
        lookup(np.zeros(100, bool), labels)
    with pytest.raises(TypeError):
        lookup(np.zeros(3, bool), labels.astype(np.int32))


def test_side_contact_fraction_tells_a_bone_in_the_scan_from_a_block_cut_from_one():
    from ctbone.segment.checks import side_contact_fraction

    zz, yy, xx = np.mgrid[:20, :30, :30]
    r2 = (yy - 15) ** 2 + (xx - 15) ** 2
    tube = (r2 <= 100) & (r2 >= 49)  # a shaft inside the field of view
    assert side_contact_fraction(tube) == 0.0
    block = np.zeros((20, 30, 30), bool)
    block[:, ::4, :] = True  # plates reaching every side in every slice
    block[:, :, ::4] = True
    block[15:] = False
    assert side_contact_fraction(block) == 1.0  # of the slices holding bone
    half = block.copy()
    half[:7, :, 20:] = False  # the first 7 of 15 slices no longer reach the last column
    assert side_contact_fraction(half) == pytest.approx(8 / 15)
    assert side_contact_fraction(np.zeros((3, 4, 5), bool)) == 0.0


def test_long_axis_tilt_of_a_shaft_along_z_along_x_and_of_a_short_wide_piece():
    from ctbone.segment.checks import long_axis_tilt_deg

    zz, yy, xx = np.mgrid[:80, :24, :24]
    r2 = (yy - 11.5) ** 2 + (xx - 11.5) ** 2
    shaft = (r2 <= 100) & (r2 >= 49)  # 80 voxels long, 20 across
    tilt, elongation = long_axis_tilt_deg(shaft, (0.01, 0.01, 0.01))
    assert tilt < 1.0 and elongation > 5
    lying = np.ascontiguousarray(shaft.transpose(2, 1, 0))  # the same shaft along x
    tilt, elongation = long_axis_tilt_deg(lying, (0.01, 0.01, 0.01))
    assert tilt > 89.0 and elongation > 5
    # anisotropic voxels count in mm: 80 slices of 0.002 mm make a disc 0.16 mm thick, 0.2 mm wide
    tilt, elongation = long_axis_tilt_deg(shaft, (0.002, 0.01, 0.01))
    assert elongation < 2  # a short wide piece: its principal axis says nothing about the shaft


def test_long_axis_tilt_of_a_block_of_the_scan_is_the_whole_scans():
    # more than a million voxels: the fit subsamples every 2nd voxel of the scan's grid, also in a block of it
    from ctbone.segment.checks import long_axis_tilt_deg

    zz, yy, xx = np.mgrid[:400, :140, :100]
    r2 = (yy - 45 - zz / 20) ** 2 + (xx - 50) ** 2  # leaning in y by 1/20
    shaft = (r2 <= 40 ** 2) & (r2 >= 18 ** 2)
    assert shaft.sum() > 1_000_000
    whole = long_axis_tilt_deg(shaft, (0.01, 0.01, 0.01))
    block = long_axis_tilt_deg(shaft[:, 3:, 5:], (0.01, 0.01, 0.01), offset_zyx=(0, 3, 5))
    assert block == whole and 2 < whole[0] < 4  # atan(1/20) = 2.9 degrees


@pytest.mark.parametrize("seed", range(8))
def test_prominent_peaks_equal_scipy_find_peaks(seed):
    from scipy import signal

    from ctbone.segment.threshold import prominent_peaks

    rng = np.random.default_rng(seed)
    for _ in range(50):
        n = int(rng.integers(1, 60))
        # few levels, so flat tops, flat valleys and equal peaks (plateaus) are common; a smooth curve besides
        x = rng.integers(0, 5, n).astype(float) if rng.random() < 0.5 else np.cumsum(rng.normal(size=n))
        for threshold in (0.0, 0.5, 1.0, np.log(2.0)):
            expected = signal.find_peaks(x, prominence=threshold)[0]
            assert np.array_equal(prominent_peaks(x, min_prominence=threshold), expected), (x, threshold)


def test_prominent_peaks_of_a_two_mode_histogram():
    from ctbone.segment.threshold import prominent_peaks

    x = np.array([-1.0, 0.0, 3.0, 1.0, 0.5, 2.0, 2.0, 2.0, 0.0, -1.0])
    # 3.0 stands 4 above the array's ends (nothing higher on either side); the plateau at 2.0 (middle index 6)
    # 1.5 above the higher of its two lowest points (0.5 before the 3.0 on the left, -1 on the right)
    assert prominent_peaks(x, min_prominence=1.5).tolist() == [2, 6]
    assert prominent_peaks(x, min_prominence=1.6).tolist() == [2]


def _box_by_definition(mask, margin_vox):
    """Each axis's first and last index holding a nonzero voxel, grown by the margin and clipped."""
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(np.moveaxis(mask, axis, 0).reshape(mask.shape[axis], -1).any(axis=1))
        if hit.size == 0:
            return None
        box.append(slice(max(0, hit[0] - margin_vox), min(mask.shape[axis], hit[-1] + 1 + margin_vox)))
    return tuple(box)


@pytest.mark.parametrize("seed", range(4))
def test_bounding_box_equals_its_definition(seed):
    from ctbone.volume import bounding_box

    rng = np.random.default_rng(seed)
    for _ in range(300):
        shape = tuple(int(n) for n in rng.integers(1, 9, int(rng.integers(1, 5))))
        mask = rng.random(shape) < rng.choice([0.0, 0.02, 0.2, 0.7])
        if rng.random() < 0.3:  # stored masks are uint8; any nonzero value counts
            mask = mask.astype(np.uint8) * np.uint8(rng.integers(1, 4))
        margin = int(rng.integers(0, 3))
        assert bounding_box(mask, margin_vox=margin) == _box_by_definition(mask, margin), (shape, margin)
