"""Benchmark: seconds per 3D snapshot (target ≤ 5 s, issue 7) on bones of growing size.

Synthetic elliptical tubes with a lytic hole and a blastic bump, plus a gray image, so the
render stage is timed alone (no segmentation). Prints a Markdown table:

    python scripts/bench_render.py              # 256³, 512³ and a 1800x300x300 tibia-like scan
    python scripts/bench_render.py --quick      # 256³ only
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ctbone.render import snapshot_image
from ctbone.render.snapshot import _prepare
from ctbone.render.surfaces import downsample_factor, gray_surface

CASES = {"256³": (256, 256, 256), "512³": (512, 512, 512), "1800×300×300": (1800, 300, 300)}


def tube(shape, voxel_mm):
    nz, ny, nx = shape
    z = np.arange(nz, dtype=np.float32)[:, None, None] * voxel_mm
    y = (np.arange(ny, dtype=np.float32)[None, :, None] - ny / 2) * voxel_mm
    x = (np.arange(nx, dtype=np.float32)[None, None, :] - nx / 2) * voxel_mm
    a, b = 0.4 * nx * voxel_mm, 0.3 * ny * voxel_mm
    r_out = np.hypot(x / a, y / b)
    bone = (r_out <= 1) & (np.hypot(x / (0.8 * a), y / (0.8 * b)) > 1)
    hole = (x - 0.2 * a) ** 2 + (y - b) ** 2 + (z - 0.4 * nz * voxel_mm) ** 2 < (0.3 * b) ** 2
    bump = ((x + 0.2 * a) ** 2 + (y - b) ** 2 + (z - 0.7 * nz * voxel_mm) ** 2 < (0.4 * b) ** 2) & (r_out > 1)
    lytic = hole & bone
    bone = (bone & ~hole) | bump
    image = np.where(bone, np.float32(1200), np.float32(50))
    image += np.random.default_rng(0).normal(0, 60, size=shape).astype(np.float32)
    return {"bone": bone, "lytic": lytic, "blastic": bump}, image


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="256³ only")
    args = parser.parse_args(argv)
    cases = {"256³": CASES["256³"]} if args.quick else CASES
    print("| scan | voxels | downsample | surface s | snapshot s (oblique, 1600×1200) | panel s |")
    print("|---|---|---|---|---|---|")
    for name, shape in cases.items():
        voxel = 0.01 if shape[0] > 1000 else 0.02
        masks, image = tube(shape, voxel)
        bone, _, _, _, box = _prepare(masks, (voxel,) * 3)
        factor = downsample_factor(bone.shape)
        t0 = time.perf_counter()
        gray_surface(image[box], bone, 600.0, (voxel,) * 3, sigma_vox=0.8, factor=factor)
        t_surface = time.perf_counter() - t0
        timings = []
        for view in ("oblique", "panel"):
            t0 = time.perf_counter()
            snapshot_image(masks, (voxel,) * 3, view=view, image=image, threshold=600.0)
            timings.append(time.perf_counter() - t0)
        print(f"| {name} | {np.prod(shape) / 1e6:.0f} M | {factor} | {t_surface:.2f} | {timings[0]:.2f} | "
              f"{timings[1]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
