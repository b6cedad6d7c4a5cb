"""Calibrated values held as codes into their distinct values: every value read back is the float32 stored."""

import numpy as np
import pytest

from ctbone.measure.masked_median import masked_median
from ctbone.segment.coded import MAX_CODES, CodedValues, encode_values, values_where
from ctbone.segment.smooth import gaussian_filter_nearest
from ctbone.segment.smoothed_image import SmoothedImage


def _bits(a):
    return np.asarray(a, np.float32).view(np.uint32)


def _dicom_like(shape, seed=0):
    """Stored integers through a rescale, as a reader makes them: few distinct float32 values."""
    rng = np.random.default_rng(seed)
    stored = rng.integers(-1024, 3000, shape).astype(np.float32)
    return stored * np.float32(0.4567) + np.float32(-310.25)


def test_decoded_values_are_the_stored_bits_including_nan_signed_zero_and_infinities():
    a = _dicom_like((9, 11, 13))
    a[0, 0, :4] = [np.nan, -0.0, np.inf, -np.inf]
    a[1, 2, 3] = 0.0
    coded = encode_values(a)
    assert coded is not None and coded.codes.dtype == np.uint16
    assert coded.palette.size == np.unique(_bits(a)).size  # one entry per bit pattern: -0 and +0 apart
    assert np.array_equal(_bits(coded.decoded()), _bits(a))
    mask = np.random.default_rng(1).random(a.shape) > 0.5
    assert np.array_equal(_bits(coded.at(mask)), _bits(a[mask]))  # in array[mask]'s order
    assert np.array_equal(_bits(values_where(coded, mask)), _bits(a[mask]))
    assert np.array_equal(_bits(values_where(a, mask)), _bits(a[mask]))


def test_strided_views_slices_and_compact_copies_read_the_same_values():
    a = _dicom_like((20, 30, 40), seed=2)
    view = a[:, 3:27, 5:36]  # a block of rows and columns: not contiguous
    coded = encode_values(view)
    assert np.array_equal(_bits(coded.decoded()), _bits(view))
    box = (slice(2, 17), slice(4, 9), slice(0, 31))
    part = coded[box]
    assert isinstance(part, CodedValues) and np.shares_memory(part.codes, coded.codes)
    compact = part.compacted()
    assert compact.codes.flags.c_contiguous and not np.shares_memory(compact.codes, coded.codes)
    assert np.array_equal(_bits(compact.decoded()), _bits(view[box]))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_each_threads_slab_coded_alone_then_merged_decodes_alike(threads):
    import numba

    a = _dicom_like((7, 16, 16), seed=3)
    a[5:] += np.float32(10000.0)  # the later slabs hold values the first does not
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        coded = encode_values(a)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(_bits(coded.decoded()), _bits(a))
    assert coded.palette.size == np.unique(_bits(a)).size


def test_more_distinct_values_than_codes_are_not_coded():
    a = np.arange(MAX_CODES + 1, dtype=np.float32).reshape(1, 1, -1)
    assert encode_values(a) is None
    assert encode_values(a[..., :MAX_CODES]) is not None  # exactly 65 536 fit
    with pytest.raises(ValueError, match="float32"):
        encode_values(np.zeros((2, 2, 2), np.float64))


def test_smoothing_and_medians_read_through_the_codes_as_from_the_floats():
    a = _dicom_like((18, 21, 25), seed=4)
    coded = encode_values(a)
    for kw in ({}, {"yx_box": (slice(2, 19), slice(3, 20)), "z_slice": slice(1, 15)}):
        assert np.array_equal(_bits(gaussian_filter_nearest(coded, 0.8, radius_vox=1, **kw)),
                              _bits(gaussian_filter_nearest(a, 0.8, radius_vox=1, **kw)))
    twin_coded = SmoothedImage.keeping_faces(gaussian_filter_nearest(a, 0.8, radius_vox=2), coded, sigma_vox=0.8,
                                             halfwidth_vox=2)
    twin = SmoothedImage.keeping_faces(gaussian_filter_nearest(a, 0.8, radius_vox=2), a, sigma_vox=0.8,
                                       halfwidth_vox=2)
    box = (slice(3, 12), slice(0, 9), slice(5, 25))
    assert np.array_equal(_bits(twin_coded.values(box)), _bits(twin.values(box)))
    rng = np.random.default_rng(5)
    for fraction in (0.5, 0.999):
        mask = rng.random(a.shape) > fraction
        assert masked_median(coded, mask) == masked_median(a, mask) == float(np.median(a[mask]))
    assert np.isnan(masked_median(coded, np.zeros(a.shape, bool)))
    a[0, 0, 0] = np.nan
    assert np.isnan(masked_median(encode_values(a), np.ones(a.shape, bool)))  # as numpy's median


@pytest.mark.parametrize("options", [{}, {"sigma_vox": 0.0}, {"support_vox": 2}, {"calibration": (0.5, -10.0)},
                                     {"roi_mm": "metaphyseal"}, {"binary": True}])
def test_a_scan_of_stored_integers_handed_over_segments_as_the_scan_kept(options):
    # handed over, the segmentation holds its crop as codes (and smooths from them); kept by the caller, it reads
    # the caller's floats: the same masks, images and facts whatever the options
    from ctbone.options import AnalysisOptions
    from ctbone.phantoms import PhantomSpec, make_phantom
    from ctbone.segment import segment
    from ctbone.volume import HandedOver

    options = dict(options)
    binary = options.pop("binary", False)
    vol, _ = make_phantom(PhantomSpec(voxel_mm=0.03, length_mm=1.5, noise_hu=60), seed=0)
    stored = np.round(vol.array)
    if binary:
        stored = (stored > 600).astype(np.float32) * np.float32(1000.0)
    kept = segment(vol.with_array(stored), AnalysisOptions(**options))
    handed = segment(HandedOver(vol.with_array(stored.copy())), AnalysisOptions(**options))
    assert isinstance(handed.calibrated_values(), CodedValues)
    # the caller's own floats are read where they are; calibrated, they are the segmentation's own (so coded)
    assert isinstance(kept.calibrated_values(), CodedValues) == ("calibration" in options)
    assert handed.info == kept.info and handed.threshold == kept.threshold and handed.unit == kept.unit
    for name in ("bone", "envelope", "marrow", "cortex", "trabecular", "raw_image", "image"):
        a, b = getattr(handed, name), getattr(kept, name)
        assert np.array_equal(_bits(a.array), _bits(b.array)) and a.origin == b.origin, name


def test_at_most_256_values_take_a_byte_a_voxel():
    rng = np.random.default_rng(6)
    stored = rng.integers(0, 256, (12, 20, 24)).astype(np.float32)  # an 8-bit scan
    a = stored * np.float32(0.01) + np.float32(-0.5)
    coded = encode_values(a)
    assert coded.codes.dtype == np.uint8 and coded.palette.size == 256
    assert np.array_equal(_bits(coded.decoded()), _bits(a))
    assert np.array_equal(_bits(gaussian_filter_nearest(coded, 0.8, radius_vox=1)),
                          _bits(gaussian_filter_nearest(a, 0.8, radius_vox=1)))
    mask = rng.random(a.shape) > 0.3
    assert masked_median(coded, mask) == masked_median(a, mask)
    a[0, 0, 0] = np.float32(1000.0)  # a 257th value: two bytes
    assert encode_values(a).codes.dtype == np.uint16
