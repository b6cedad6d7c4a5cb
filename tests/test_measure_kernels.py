"""Compiled helpers of the lesion stage equal the numpy formulations they replace."""

import numpy as np

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
    bins = rng.integers(0, 40, (5, 8, 9)).astype(np.int32)
    radius = rng.uniform(0, 1, bins.shape).astype(np.float32)
    frame = PolarFrame(radius, bins, 40, np.zeros((5, 2)), 0.01)
    lower = rng.uniform(0, 0.5, (5, 40)).astype(np.float32) + 0.013  # float32 arithmetic, as on the volumes
    upper = rng.uniform(0.5, 1, (5, 40)).astype(np.float32) - 0.021
    z = np.arange(5)[:, None, None]
    lower_v, upper_v = lower[z, bins], upper[z, bins]  # the tables broadcast to the voxels
    assert np.array_equal(frame.between(lower, upper), (radius > lower_v) & (radius <= upper_v))
    assert np.array_equal(frame.between(upper=upper), radius <= upper_v)
    assert np.array_equal(frame.between(lower=lower), radius > lower_v)
