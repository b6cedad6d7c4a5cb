#!/usr/bin/env python
"""Speed of `within_mm` (ball dilation by a capped separable transform) against the `edt` package.

The closings of the envelope and of the compartments are two ball dilations each. This times, on the
cached 512^3 bench phantom's bone mask (scripts/bench.py writes it), the envelope's closing (0.3 mm
ball, 70 voxels) and the compartments' (0.035 mm, 8 voxels) both ways, and checks they give the same
voxels:

* "edt": the full float32 distance transform of the `edt` package, thresholded (ctbone before 2026-12-02);
* "within_mm": ctbone.segment.distance, values above the radius dropped as they appear; radii up to
  24 voxels on isotropic grids (the compartments' closing) by windows of rows (segment/distance_window.py).

Usage:  python scripts/bench_distance.py [--size 512|256]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def close_with_edt(mask, spacing, radius):
    """The closing as ctbone computed it before: two thresholded `edt` transforms of the padded mask."""
    from ctbone.segment.envelope import distance_inside, distance_to

    pad = [int(np.ceil(radius / s)) + 1 for s in spacing]
    padded = np.pad(mask, [(p, p) for p in pad])
    dilated = distance_to(padded, spacing) <= radius
    closed = (distance_inside(dilated, spacing) > radius) | padded
    return closed[tuple(slice(p, -p) for p in pad)]


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="512", choices=["256", "512"])
    args = parser.parse_args()

    import ctbone
    from bench import phantom_folder
    from ctbone.parallel import thread_count
    from ctbone.segment import segment
    from ctbone.segment.distance import within_mm
    from ctbone.segment.envelope import close_mm

    seg = segment(ctbone.read_scan(phantom_folder(args.size)))
    bone, spacing = seg.bone.array.astype(bool), seg.bone.spacing
    space = seg.envelope.array.astype(bool) & ~bone
    within_mm(bone[:8, :8, :8], spacing_mm=spacing, radius_mm=0.1)  # compile outside the timing
    print(f"# {args.size}^3 bench phantom, bone crop {bone.shape}, voxel {spacing[2] * 1000:.2f} um, "
          f"{thread_count()} threads")
    print("| closing | ball radius | edt s | within_mm s | speed-up | voxels that differ |")
    print("|---|---|---|---|---|---|")
    for name, mask, radius in [("envelope (bone)", bone, 0.3), ("compartments (marrow space)", space, 0.035)]:
        old, t_old = timed(close_with_edt, mask, spacing, radius)
        new, t_new = timed(close_mm, mask, spacing_mm=spacing, radius_mm=radius)
        print(f"| {name} | {radius} mm = {radius / spacing[2]:.1f} vox | {t_old:.2f} | {t_new:.2f} | "
              f"{t_old / t_new:.1f}× | {int((old != new).sum())} |")


if __name__ == "__main__":
    main()
