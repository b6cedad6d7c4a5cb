#!/usr/bin/env python
"""A scan larger than memory, analysed slab by slab (issue 7).

Builds (once, cached under .bench-cache/phantom_2000/) a 2000 x 2000 x 2000 DICOM series: the elongated
bench phantom (1800 x 300 x 300 at 7.5 um, a perforation and a blastic lesion; scripts/bench.py)
placed in a 2000-voxel field of view filled with its own background noise, plus a thin bright rod
far from the bone (a particle the despeckle must drop). 16 GB of int16 files; as float32 the scan
alone is 32 GB, and the in-memory path would hold ~128 GB.

Then, in a fresh process: ``ctbone.open_scan`` (which picks slab-by-slab reading because the scan would not
fit) and ``ctbone.analyze`` of it handed over (as the ctbone command does), without rendering, timing each
stage and sampling the peak RSS; and, as the yardstick, one plain pass reading every file's bytes. Finally it
reads the 300 x 300 columns of the same files that hold the bone (all 2000 slices), analyses them in memory
with the threshold the big run chose, and checks that every metric is equal.

Usage:  python scripts/bench_large.py [--size 2000] [--memory auto|slabs|load] [--threshold auto|HU]
        [--no-rod] [--keep]
(``--size 400 --memory slabs`` is a quick check: 1800 x 400 x 400, read slab by slab.)
Needs ~17 GB of free disk under .bench-cache/ (deleted afterwards unless --keep).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
CACHE = ROOT / ".bench-cache"


def build(size: int, with_rod: bool = True) -> tuple[Path, dict]:
    """The big series (cached) and where the bone sits in it."""
    from bench import phantom_folder

    from ctbone.io import read_scan, write_dicom_series
    from ctbone.volume import Volume

    folder = CACHE / (f"phantom_{size}" + ("" if with_rod else "_no_rod")) / "dicom"
    placement_file = folder.parent / "placement.json"
    if placement_file.exists():
        return folder, json.loads(placement_file.read_text())
    bone = read_scan(phantom_folder("long"))
    bz, by, bx = bone.shape
    nz = max(size, bz)  # a smaller --size is a shorter check: the field narrows, all of the bone stays
    z0, y0, x0 = (nz - bz) // 2, (size - by) // 2 + size // 8, (size - bx) // 2
    corner = np.concatenate([bone.array[:, :8, :8].ravel(), bone.array[:, -8:, -8:].ravel()])
    mean, sd = float(corner.mean()), float(corner.std())
    rng = np.random.default_rng(0)
    pool = [np.rint(rng.normal(mean, sd, (size, size))).astype(np.float32) for _ in range(8)]
    rod_y, rod_x, rod_r = size // 16, size // 16, 12  # 0.18 mm across, far from the bone
    yy, xx = np.ogrid[:size, :size]
    rod = ((yy - rod_y) ** 2 + (xx - rod_x) ** 2 <= rod_r ** 2) & with_rod
    folder.mkdir(parents=True, exist_ok=True)
    uids = {"series_uid": "1.2.826.0.1.3680043.8.498.2000", "study_uid": "1.2.826.0.1.3680043.8.498.2001"}
    t0 = time.perf_counter()
    slab = 50
    for s0 in range(0, nz, slab):
        n = min(slab, nz - s0)
        block = np.empty((n, size, size), np.float32)
        for i in range(n):
            z = s0 + i
            block[i] = np.roll(pool[z % 8], z, axis=1)
            block[i][rod] = 1400.0
            if z0 <= z < z0 + bz:
                block[i, y0:y0 + by, x0:x0 + bx] = bone.array[z - z0]
        vol = Volume(block, spacing=bone.spacing, origin=(0.0, 0.0, s0 * bone.spacing[0]), unit="HU")
        write_dicom_series(vol, folder, first_index=s0, **uids)
        print(f"# wrote slices {s0}-{s0 + n - 1} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    placement = {"bone_offset_zyx": [z0, y0, x0], "bone_shape": [bz, by, bx], "write_s": round(time.perf_counter() - t0)}
    placement_file.write_text(json.dumps(placement))
    return folder, placement


def measure(folder: Path, memory: str, threshold: str) -> dict:
    """Run in a child process: open_scan + analyze, stage times and peak RSS."""
    from bench import PeakRSS

    import ctbone
    from ctbone.io.slabs import ScanSlabs

    rss = PeakRSS()
    t0 = time.perf_counter()
    n_bytes = 0
    for p in sorted(folder.iterdir()):
        n_bytes += len(p.read_bytes())
    plain_read_s = time.perf_counter() - t0
    rss.reset()
    base = rss.peak
    t0 = time.perf_counter()
    scan = ctbone.open_scan(folder, memory=memory)
    open_s = time.perf_counter() - t0
    shape, read = list(scan.shape), "slab by slab" if isinstance(scan, ScanSlabs) else "in memory"
    handed = ctbone.HandedOver(scan)  # as the ctbone command does: the analysis' only reference, let go when cut out
    del scan
    t0 = time.perf_counter()
    result = ctbone.analyze(handed, render=False, threshold=threshold if threshold == "auto" else float(threshold))
    analyze_s = time.perf_counter() - t0
    return {
        "shape": shape, "read": read, "file_bytes": n_bytes,
        "plain_read_s": round(plain_read_s, 1), "open_s": round(open_s, 1), "analyze_s": round(analyze_s, 1),
        "timings_s": result.info["timings_s"], "slab_read": result.info["segmentation"].get("slab_read"),
        "peak_above_start_mb": round((rss.peak - base) / 1e6), "threshold": result.metrics["threshold_hu"],
        "metrics": result.metrics,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--keep", action="store_true", help="keep the big series in .bench-cache/")
    parser.add_argument("--no-rod", action="store_true", help="no far rod: the bone alone in the field of view")
    parser.add_argument("--memory", default="auto", choices=("auto", "load", "slabs"),
                        help="how ctbone.open_scan reads the big scan (default: its own choice)")
    parser.add_argument("--threshold", default="auto", help="'auto' (default) or a fixed value in HU")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child), args.memory, args.threshold), default=float))
        return
    folder, placement = build(args.size, with_rod=not args.no_rod)
    out = subprocess.run([sys.executable, __file__, "--child", str(folder), "--memory", args.memory,
                          "--threshold", args.threshold],
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr[-3000:])
    big = json.loads(out.stdout.strip().splitlines()[-1])
    (folder.parent / "last_run.json").write_text(json.dumps(big, default=float))

    import ctbone
    from ctbone.io.slabs import open_dicom_slabs

    # the yardstick: the same files' columns that hold the bone (all slices), read and analysed in memory with
    # the threshold the big run chose; the bone's box and margin lie inside them, so every metric must be equal
    scan = open_dicom_slabs(folder)
    (_, y0, x0), (_, by, bx) = placement["bone_offset_zyx"], placement["bone_shape"]
    columns = scan.volume(scan.read(0, scan.shape[0], slice(y0, y0 + by), slice(x0, x0 + bx)), y0=y0, x0=x0)
    reference = ctbone.analyze(columns, render=False, threshold=big["threshold"])
    def same(a, b):
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))

    differ = [k for k, v in reference.metrics.items() if not same(v, big["metrics"].get(k))]
    gb = big["file_bytes"] / 1e9
    print("| scan | files | read every file once | open | analyze (segment / lesions / morphometry) | peak RSS above start |")
    print("|---|---|---|---|---|---|")
    t = big["timings_s"]
    print(f"| {'x'.join(map(str, big['shape']))} ({big['read']}) | "
          f"{gb:.1f} GB | {big['plain_read_s']} s | {big['open_s']} s | {big['analyze_s']} s "
          f"({t.get('segment')} / {t.get('lesions')} / {t.get('morphometry')}) | {big['peak_above_start_mb']} MB |")
    print(f"\nslab read: {big['slab_read']}")
    print(f"bone placed at {placement}; threshold {big['threshold']:.4g} HU")
    print(f"metrics equal to the bone's {by}x{bx} columns of the same series analysed in memory at that threshold: "
          f"{'all ' + str(len(reference.metrics)) if not differ else 'NO: ' + ', '.join(differ)}")
    if not args.keep:
        shutil.rmtree(folder.parent)


if __name__ == "__main__":
    main()
