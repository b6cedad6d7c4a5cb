#!/usr/bin/env python
"""Read speed and memory: ctbone.read_scan vs SimpleITK's ImageSeriesReader on the same DICOM series.

Writes (once, cached in .bench-cache/) a 512-slice series of 512x512 int16 images with random file
names, then times each reader in a fresh process (best of 3) and reports its peak RSS above the
interpreter's baseline, as a multiple of one float32 copy of the volume.

Usage: python scripts/bench_read.py [--slices 512] [--size 512]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# peaks from VmHWM (this process's high-water mark, reset by exec): ru_maxrss starts at the forking parent's
CHILD = r"""
import json, sys, time
import numpy as np
which, folder = sys.argv[1], sys.argv[2]
import SimpleITK as sitk, ctbone, pydicom  # imports before the baseline
def hwm_kb():
    return int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])
base = hwm_kb()
times = []
for _ in range(3):
    t0 = time.perf_counter()
    if which == "sitk":
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder))
        image = reader.Execute()
        array = sitk.GetArrayViewFromImage(image)
    else:
        array = ctbone.read_scan(folder).array
    times.append(time.perf_counter() - t0)
    del array
    image = None
peak = hwm_kb()
print(json.dumps({"best_s": min(times), "peak_mb": (peak - base) / 1024}))
"""


def make_series(slices: int, size: int) -> Path:
    import numpy as np

    from ctbone.io import write_dicom_series
    from ctbone.volume import Volume

    folder = ROOT / ".bench-cache" / f"read_{slices}x{size}"
    if folder.exists() and len(list(folder.glob("*.dcm"))) == slices:
        return folder
    rng = np.random.default_rng(0)
    array = rng.normal(0, 300, (slices, size, size)).astype(np.float32)
    write_dicom_series(Volume(array, spacing=(0.01, 0.01, 0.01), unit="HU"), folder, file_names="random",
                       shuffle_seed=0)
    return folder


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=512)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    t0 = time.perf_counter()
    folder = make_series(args.slices, args.size)
    print(f"# series ready in {time.perf_counter() - t0:.0f} s: {folder}", file=sys.stderr)
    float32_mb = args.slices * args.size * args.size * 4 / 2**20
    rows = {}
    for which in ("sitk", "ctbone"):
        out = subprocess.run([sys.executable, "-c", CHILD, which, str(folder)], capture_output=True, text=True,
                             check=True)
        rows[which] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"| reader | best of 3 (s) | peak RSS above baseline (MB) | × one float32 copy ({float32_mb:.0f} MB) |")
    print("|---|---|---|---|")
    for which, name in (("sitk", "SimpleITK ImageSeriesReader"), ("ctbone", "ctbone.read_scan")):
        r = rows[which]
        print(f"| {name} | {r['best_s']:.2f} | {r['peak_mb']:.0f} | {r['peak_mb'] / float32_mb:.2f} |")
    print(f"\nctbone / SimpleITK time: {rows['ctbone']['best_s'] / rows['sitk']['best_s']:.2f}")


if __name__ == "__main__":
    main()
