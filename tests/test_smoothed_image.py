"""The segmentation's smoothed image, made where it is read, against the scan's smoothed image on the crop."""

import numpy as np
import pytest

from ctbone.options import AnalysisOptions
from ctbone.phantoms import PhantomSpec, make_phantom
from ctbone.segment import _calibrated, segment
from ctbone.segment.smooth import gaussian_smooth
from ctbone.segment.smoothed_image import SmoothedImage
from ctbone.volume import Volume


def _crop(seg):
    return tuple(slice(a, b) for a, b in seg.info["crop_zyx"])


def _random_boxes(shape, rng, n=12):
    for _ in range(n):
        box = []
        for size in shape:
            a = int(rng.integers(0, size))
            box.append(slice(a, int(rng.integers(a + 1, size + 1))))
        yield tuple(box)


@pytest.mark.parametrize("support", [1, 2])
def test_boxes_of_a_crop_inside_a_volume_are_its_smoothed_values(support):
    # the crop's outer layers read voxels beyond it: kept; the rest is made again from the crop
    rng = np.random.default_rng(0)
    volume = rng.normal(0.0, 100.0, size=(30, 34, 38)).astype(np.float32)
    smoothed = gaussian_smooth(volume, sigma_vox=0.9, support_vox=support)
    crop = (slice(4, 27), slice(3, 30), slice(0, 33))  # the x side at 0 is the volume's own edge
    twin = SmoothedImage.keeping_faces(smoothed[crop], np.ascontiguousarray(volume[crop]), sigma_vox=0.9,
                                       halfwidth_vox=support)
    assert np.array_equal(twin.values(), smoothed[crop])
    for box in _random_boxes(twin.shape, rng):
        assert np.array_equal(twin.values(box), smoothed[crop][box]), box
    inner = (slice(2, None), slice(1, -1), slice(3, 20))  # a box given within another
    assert np.array_equal(twin.values((slice(0, 3), slice(1, 4), slice(None)), within=inner),
                          smoothed[crop][inner][0:3, 1:4, :])
    # without the kept layers the crop's sides would differ: the test can fail
    bare = gaussian_smooth(np.ascontiguousarray(volume[crop]), sigma_vox=0.9, support_vox=support)
    assert not np.array_equal(bare, smoothed[crop])


def test_no_smoothing_gives_the_calibrated_values_as_a_new_array():
    calibrated = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    twin = SmoothedImage.keeping_faces(calibrated, calibrated, sigma_vox=0.0, halfwidth_vox=0)
    box = (slice(1, 3), slice(0, 5), slice(2, 4))
    got = twin.values(box)
    assert np.array_equal(got, calibrated[box]) and not np.shares_memory(got, calibrated)
    with pytest.raises(ValueError, match="step 1"):
        twin.values((slice(0, 4, 2), slice(None), slice(None)))


@pytest.fixture(scope="module")
def shaft():
    vol, _ = make_phantom(PhantomSpec(voxel_mm=0.03, length_mm=1.5, noise_hu=60), seed=0)
    nz, ny, nx = vol.shape
    field = np.random.default_rng(1).normal(-1000.0, 60.0, size=(nz, 2 * ny, 2 * nx)).astype(np.float32)
    field[:, ny // 2:ny // 2 + ny, 5:5 + nx] = vol.array  # a block of the field is cut out around the bone
    return Volume(field, spacing=vol.spacing, unit=vol.unit, meta={"source": "shaft"})


@pytest.mark.parametrize("options", [{}, {"roi_mm": "metaphyseal"}, {"roi_mm": (0.3, 1.1)},
                                     {"calibration": (0.5, 12.0)}, {"sigma_vox": 1.2, "support_vox": 2},
                                     {"sigma_vox": 0.0}])
def test_the_segmentations_smoothed_image_is_the_scans_on_the_crop(shaft, options):
    opts = AnalysisOptions(**options)
    seg = segment(shaft, opts)
    expected = gaussian_smooth(_calibrated(shaft, opts).array, sigma_vox=opts.sigma_vox,
                               support_vox=opts.support_vox)[_crop(seg)]
    assert np.array_equal(seg.image.array, expected)
    assert seg.image.origin == seg.raw_image.origin and seg.image.unit == seg.raw_image.unit
    rng = np.random.default_rng(2)
    for box in _random_boxes(expected.shape, rng, n=6):
        assert np.array_equal(seg.smoothed_array(box), expected[box]), box


def test_trabecular_cube_and_binary_images():
    rng = np.random.default_rng(3)
    cube = Volume(rng.normal(500.0, 400.0, size=(20, 22, 24)).astype(np.float32), spacing=(0.02,) * 3, unit="HU")
    seg = segment(cube, AnalysisOptions(threshold=600.0), mode="trabecular-cube")
    assert np.array_equal(seg.image.array, gaussian_smooth(cube.array, sigma_vox=0.8, support_vox=1))
    binary = Volume((cube.array > 600).astype(np.float32), spacing=(0.02,) * 3, unit="HU")
    seg = segment(binary, AnalysisOptions(), mode="trabecular-cube")
    assert seg.is_binary_input and np.array_equal(seg.image.array, binary.array)


def test_the_twin_of_a_crop_is_the_crop_of_the_twin():
    rng = np.random.default_rng(4)
    volume = rng.normal(0.0, 100.0, size=(20, 24, 26)).astype(np.float32)
    smoothed = gaussian_smooth(volume, sigma_vox=0.8, support_vox=1)
    block = (slice(0, 20), slice(2, 22), slice(3, 25))
    twin = SmoothedImage.keeping_faces(smoothed[block], np.ascontiguousarray(volume[block]), sigma_vox=0.8,
                                       halfwidth_vox=1)
    crop = (slice(5, 15), slice(1, 18), slice(0, 20))
    twin_of_crop = twin.cropped(crop, np.ascontiguousarray(volume[block][crop]))
    assert np.array_equal(twin_of_crop.values(), smoothed[block][crop])
    with pytest.raises(ValueError, match="crop's shape"):
        twin.cropped(crop, volume)
