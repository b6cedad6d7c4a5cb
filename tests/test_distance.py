"""within_mm (dilation by a Euclidean ball) against its definition and against the edt package."""

import numpy as np
import pytest

from ctbone.measure.thickness import squared_distance
from ctbone.segment.distance import ring_mm, within_mm
from ctbone.segment.envelope import close_mm, distance_to, open_mm


def _brute_within(mask, spacing, radius):
    """The definition: some True voxel centre at squared distance <= radius² (1 + 1e-6)."""
    if not mask.any():
        return np.zeros(mask.shape, bool)
    sites = np.argwhere(mask) * np.asarray(spacing)
    grid = np.indices(mask.shape).reshape(3, -1).T * np.asarray(spacing)
    d2 = ((grid[:, None, :] - sites[None]) ** 2).sum(-1).min(axis=1)
    return (d2 <= radius * radius * (1 + 1e-6)).reshape(mask.shape)


@pytest.mark.parametrize("seed", range(8))
def test_within_equals_the_definition(seed):
    rng = np.random.default_rng(seed)
    for _ in range(12):
        shape = tuple(int(n) for n in rng.integers(1, 13, 3))
        mask = rng.random(shape) < rng.choice([0.002, 0.03, 0.3])
        spacing = (0.01, 0.01, 0.01) if seed % 2 else tuple(float(s) for s in rng.choice([0.5, 0.7, 1.0, 1.5], 3))
        radius = float(rng.choice([0.0, 0.01, 0.03, 0.05, 0.7, 1.0, 2.2, 3.0]))
        assert np.array_equal(within_mm(mask, spacing_mm=spacing, radius_mm=radius),
                              _brute_within(mask, spacing, radius))


def test_a_voxel_at_exactly_the_radius_is_within():
    mask = np.zeros((1, 1, 61), bool)
    mask[0, 0, 0] = True
    # 0.3 / 0.01 is 29.999999999999996 in floats; the voxel 30 steps away is still at the radius
    got = within_mm(mask, spacing_mm=(0.01, 0.01, 0.01), radius_mm=0.3)
    assert got[0, 0, :31].all() and not got[0, 0, 31:].any()
    # a DICOM spacing that differs in the 17th digit is still isotropic
    assert np.array_equal(within_mm(mask, spacing_mm=(0.0042499999999999994, 0.00425, 0.00425), radius_mm=30 * 0.00425),
                          got)


@pytest.mark.parametrize("radius_vox", [30.0, 255.5, 256.0, 300.0])
def test_radius_on_both_sides_of_the_two_byte_limit(radius_vox):
    # isotropic radii below 256 voxels hold their squared distances in 2 bytes; from 256 on, in float32
    rng = np.random.default_rng(int(radius_vox))
    mask = rng.random((2, 3, 700)) < 0.004
    mask[0, 0, 0] = True
    spacing = (0.01, 0.01, 0.01)
    got = within_mm(mask, spacing_mm=spacing, radius_mm=radius_vox * 0.01)
    assert np.array_equal(got, _brute_within(mask, spacing, radius_vox * 0.01))
    ring = ring_mm(mask, spacing_mm=spacing, inner_mm=0.25, outer_mm=radius_vox * 0.01)
    assert np.array_equal(ring, got & ~_brute_within(mask, spacing, 0.25))


def test_within_equals_thresholded_edt_on_a_large_random_mask():
    rng = np.random.default_rng(3)
    mask = rng.random((40, 70, 90)) < 0.001
    for spacing, radius in [((0.01, 0.01, 0.01), 0.123), ((0.02, 0.01, 0.015), 0.087)]:
        # radii with no voxel near a tie, so edt's float32 rounding cannot differ
        assert np.array_equal(within_mm(mask, spacing_mm=spacing, radius_mm=radius),
                              distance_to(mask, spacing) <= radius)


def test_empty_mask_and_zero_radius():
    mask = np.zeros((3, 4, 5), bool)
    assert not within_mm(mask, spacing_mm=(1, 1, 1), radius_mm=5).any()
    mask[1, 2, 3] = True
    assert np.array_equal(within_mm(mask, spacing_mm=(1, 1, 1), radius_mm=0), mask)


def test_closing_bridges_a_gap_and_opening_removes_a_thin_bar():
    # two slabs 4 voxels apart: a ball of radius 3 bridges the gap, one of radius 1 does not
    mask = np.zeros((5, 20, 20), bool)
    mask[:, :, :8] = mask[:, :, 12:] = True
    assert close_mm(mask, spacing_mm=(1, 1, 1), radius_mm=3)[2, 10, 10]
    assert not close_mm(mask, spacing_mm=(1, 1, 1), radius_mm=1)[2, 10, 10]
    # a bar 2 voxels thick on a block: an opening with radius 2 keeps the block, drops the bar
    solid = np.zeros((12, 12, 30), bool)
    solid[1:11, 1:11, 1:11] = True
    solid[5:7, 5:7, 11:29] = True
    opened = open_mm(solid, spacing_mm=(1, 1, 1), radius_mm=2)
    assert opened[5, 5, 5] and not opened[5, 5, 20]


def test_ring_is_the_difference_of_two_dilations():
    rng = np.random.default_rng(5)
    mask = rng.random((15, 20, 25)) < 0.01
    for spacing in [(0.01, 0.01, 0.01), (0.02, 0.01, 0.015)]:
        ring = ring_mm(mask, spacing_mm=spacing, inner_mm=0.02, outer_mm=0.06)
        expected = (within_mm(mask, spacing_mm=spacing, radius_mm=0.06)
                    & ~within_mm(mask, spacing_mm=spacing, radius_mm=0.02))
        assert ring.any() and np.array_equal(ring, expected)


@pytest.mark.parametrize("outside", ["background", "open"])
def test_thickness_squared_distance_equals_edt(outside):
    import edt

    rng = np.random.default_rng(7)
    for spacing in [(0.01, 0.01, 0.01), (0.5, 0.7, 1.0)]:
        for fraction in (0.03, 0.5, 0.97, 1.0):  # 0.03: short runs between long stretches of sites
            mask = rng.random((9, 14, 17)) < fraction
            expected = edt.edtsq(mask, anisotropy=spacing, black_border=outside == "background")
            got = squared_distance(mask, spacing_mm=spacing, outside=outside)
            assert np.array_equal(np.isfinite(got), np.isfinite(expected))
            finite = np.isfinite(expected)
            assert np.allclose(got[finite], expected[finite], rtol=1e-6, atol=0)


def test_yx_box_gives_the_same_voxels_as_the_whole_array():
    rng = np.random.default_rng(11)
    mask = rng.random((12, 30, 26)) < 0.01
    whole = within_mm(mask, spacing_mm=(0.02, 0.01, 0.01), radius_mm=0.05)
    box = (slice(5, 22), slice(3, 20))
    got = within_mm(mask, spacing_mm=(0.02, 0.01, 0.01), radius_mm=0.05, yx_box=box)
    assert np.array_equal(got, whole[:, 5:22, 3:20])


@pytest.mark.parametrize("spacing", [(0.01, 0.01, 0.01), (0.013, 0.01, 0.011), (0.007, 0.01, 0.01)])
def test_long_columns_with_many_runs_far_from_their_sites(spacing):
    # the last pass (along z) transforms only windows around the voxels still undecided: columns much longer
    # than the radius, their sites scattered so that a column holds several such windows, some merging
    rng = np.random.default_rng(13)
    mask = rng.random((160, 5, 6)) < 0.004
    mask[40:47, 2, 3] = mask[52, 2, 3] = True  # undecided runs a little more than a radius apart
    brute = {r: _brute_within(mask, spacing, r) for r in (0.02, 0.045)}
    for radius in (0.02, 0.045):
        assert np.array_equal(within_mm(mask, spacing_mm=spacing, radius_mm=radius), brute[radius])
    # a ring's inner radius leaves more voxels undecided; its outer radius sets which sites count
    ring = ring_mm(mask, spacing_mm=spacing, inner_mm=0.02, outer_mm=0.045)
    assert ring.any() and np.array_equal(ring, brute[0.045] & ~brute[0.02])


def test_compact_squared_distances_are_the_float32_ones_in_half_the_memory():
    from ctbone.segment.distance import squared_distance_compact, squared_distance_mm2

    rng = np.random.default_rng(7)
    sites = rng.random((13, 40, 31)) < 0.02
    iso = (0.0042499999999999994, 0.00425, 0.00425)  # isotropic to the 17th digit, as DICOM strings give it
    values, scale = squared_distance_compact(sites, spacing_mm=iso)
    assert values.dtype == np.uint16 and scale.dtype == np.float32
    assert np.array_equal(np.float32(values) * scale, squared_distance_mm2(sites, spacing_mm=iso))
    # where uint16 would not hold them: the float32 values themselves, scale 1
    for spacing, mask in [((0.02, 0.01, 0.01), sites), (iso, np.zeros((2, 3, 4), bool)),
                          (iso, np.pad(np.ones((1, 1, 1), bool), ((0, 0), (0, 0), (0, 300))))]:
        values, scale = squared_distance_compact(mask, spacing_mm=spacing)
        assert values.dtype == np.float32 and scale == 1.0
        assert np.array_equal(values, squared_distance_mm2(mask, spacing_mm=spacing))


def _ring_cases(rng, radii_vox):
    """(radius in voxels, a random mask, two `ring_mm` keyword sets: a random inner radius, whole and in a box)
    per radius, on a 0.01 mm isotropic grid."""
    for radius_vox in radii_vox:
        shape = tuple(int(n) for n in rng.integers(1, 40, 3))
        mask = rng.random(shape) < rng.choice([0.001, 0.02, 0.3, 0.8])
        inner = float(rng.choice([-1.0, 0.0, 1.0, 2.2])) if radius_vox > 2.2 else -1.0
        box = (slice(int(rng.integers(0, shape[1])), None), slice(0, int(rng.integers(1, shape[2] + 1))))
        yield radius_vox, mask, [dict(inner_mm=inner * 0.01, outer_mm=radius_vox * 0.01),
                                 dict(inner_mm=inner * 0.01, outer_mm=radius_vox * 0.01, yx_box=box)]


@pytest.mark.parametrize("seed", range(4))
def test_windows_of_rows_give_the_lower_envelopes_answer(seed, monkeypatch):
    # small radii on isotropic grids go through distance_window; the lower envelopes (made to take every radius
    # here) must give the same voxels, rings and boxes included, up to the windows' largest radius and at it
    import ctbone.segment.distance as distance
    from ctbone.segment.distance_window import WINDOW_MAX_VOX

    rng = np.random.default_rng(seed)
    spacing = (0.01, 0.01, 0.01)
    for radius_vox, mask, calls in _ring_cases(rng, (0.0, 1.0, 1.5, 2.5, 4.2, 8.235, 13.0, WINDOW_MAX_VOX + 0.5)):
        windows = [ring_mm(mask, spacing_mm=spacing, **kw) for kw in calls]
        with monkeypatch.context() as patch:
            patch.setattr(distance, "WINDOW_MAX_VOX", -1)
            envelopes = [ring_mm(mask, spacing_mm=spacing, **kw) for kw in calls]
        for got, expected in zip(windows, envelopes):
            assert got.shape == expected.shape and np.array_equal(got, expected)
    # the windows' own edge: a single site, a ball of exactly WINDOW_MAX_VOX voxels (ties on the radius)
    mask = np.zeros((2 * WINDOW_MAX_VOX + 3,) * 3, bool)
    mask[(WINDOW_MAX_VOX + 1,) * 3] = True
    got = within_mm(mask, spacing_mm=spacing, radius_mm=WINDOW_MAX_VOX * 0.01)
    assert np.array_equal(got, _brute_within(mask, spacing, WINDOW_MAX_VOX * 0.01))


@pytest.mark.parametrize("seed", range(4))
def test_blocks_of_slices_give_the_lower_envelopes_answer(seed, monkeypatch):
    # isotropic radii beyond the windows' go along z first, by blocks of slices; made to take every radius here,
    # with blocks of one to a few slices (each block sweeps the mask within the radius of it), they must give the
    # volume's lower envelopes' voxels, rings and boxes included
    import ctbone.segment.distance as distance
    import ctbone.segment.distance_slabs as slabs

    rng = np.random.default_rng(100 + seed)
    spacing = (0.01, 0.01, 0.01)
    monkeypatch.setattr(distance, "WINDOW_MAX_VOX", -1)
    for radius_vox, mask, calls in _ring_cases(rng, (0.0, 1.0, 2.5, 4.2, 8.235, 13.0, 30.0)):
        with monkeypatch.context() as patch:
            patch.setattr(distance, "BY_SLABS", False)
            envelopes = [ring_mm(mask, spacing_mm=spacing, **kw) for kw in calls]
        for block_slices in (1, 3, 1000):
            with monkeypatch.context() as patch:
                patch.setattr(slabs, "BLOCK_BYTES", block_slices * 2 * mask.shape[1] * mask.shape[2])
                got = [ring_mm(mask, spacing_mm=spacing, **kw) for kw in calls]
            for g, expected in zip(got, envelopes):
                assert g.shape == expected.shape and np.array_equal(g, expected), (radius_vox, block_slices)
    # and the definition, on a column of sites far apart along z (the sweeps' reach) and a tie on the radius
    mask = np.zeros((90, 3, 4), bool)
    mask[[0, 31, 89], 1, 2] = True
    monkeypatch.setattr(slabs, "BLOCK_BYTES", 7 * 2 * 3 * 4)
    assert np.array_equal(within_mm(mask, spacing_mm=spacing, radius_mm=0.3), _brute_within(mask, spacing, 0.3))
