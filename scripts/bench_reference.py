#!/usr/bin/env python
"""Time and accuracy of the reference comparison (`--reference`: bone lost / gained after rigid registration).

The reference is the bench phantom itself (scripts/bench.py caches it), moved by a known rigid transform
(10° about the long axis, 3° of tilt, a shift of several voxels) and resampled: the registration must find
that transform, and nothing is lost or gained. Prints, per size, the seconds of `compare_to_reference`
(reference segmentation, two registrations, resampling, lost/gained), the Dice after registration, the
error of the recovered shift at the scan's centre in voxels, and lost / gained (true: 0).

Usage:  python scripts/bench_reference.py [--sizes 256,512]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def moved_reference(volume, rz_deg=10.0, tilt_deg=3.0, shift_vox=(6.0, -3.0, 4.0)):
    """(the scan resampled under a known Euler transform, that transform)."""
    import SimpleITK as sitk

    image = volume.to_sitk()
    centre = image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in image.GetSize()])
    truth = sitk.Euler3DTransform()
    truth.SetCenter(centre)
    truth.SetRotation(np.radians(tilt_deg), 0.0, np.radians(rz_deg))
    truth.SetTranslation([v * s for v, s in zip(shift_vox, image.GetSpacing())])
    low = float(volume.array.min())
    moved = sitk.Resample(image, image, truth, sitk.sitkLinear, low, sitk.sitkFloat32)
    return volume.with_array(sitk.GetArrayFromImage(moved)), truth


def run(size: str) -> str:
    import SimpleITK as sitk

    import ctbone
    from bench import phantom_folder
    from ctbone.measure.reference import compare_to_reference
    from ctbone.memory import retain_freed_memory
    from ctbone.pipeline import make_options
    from ctbone.segment import segment

    retain_freed_memory()
    volume = ctbone.read_scan(phantom_folder(size))
    reference, truth = moved_reference(volume)
    options = make_options()
    seg = segment(volume, options)
    t0 = time.perf_counter()
    result = compare_to_reference(seg, reference, options)
    seconds = time.perf_counter() - t0
    found = sitk.Euler3DTransform()
    found.SetFixedParameters(result.info["transform_fixed_parameters"])
    found.SetParameters(result.info["transform_parameters"])
    # where the scan's centre lies in the reference, by the found transform and by the truth's inverse
    # (reference(x) = scan(truth(x))), in voxels
    image = seg.bone.to_sitk()
    centre = image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in image.GetSize()])
    error_vox = np.linalg.norm(np.subtract(found.TransformPoint(centre), truth.GetInverse().TransformPoint(centre))) / min(volume.spacing)
    m = result.metrics
    return (f"| {size} | {seg.bone.shape} | {seconds:.1f} | {m['registration_dice']:.4f} | {error_vox:.2f} | "
            f"{m['bone_lost_mm3']:.4f} / {m['bone_gained_mm3']:.4f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,512")
    args = parser.parse_args()
    print("| scan | crop (z, y, x) | compare s | Dice | shift error (voxels) | lost / gained mm³ (true 0) |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        print(run(size), flush=True)


if __name__ == "__main__":
    main()
