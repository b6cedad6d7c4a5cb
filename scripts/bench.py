#!/usr/bin/env python
"""Stage-by-stage benchmark of `ctbone analyze` on phantom scans (issue 7).

For each size it writes a phantom DICOM series once (cached under .bench-cache/),
then, in a fresh child process so peak memory is the scan's own:

* times ctbone.read_scan and each analyze stage (the scan handed over, as the ctbone command does),
  sampling RSS to get the analysis' peak and each stage's own,
* times SimpleITK's ImageSeriesReader on the series (the yardstick) in a process of its own, so that
  neither shapes the other's memory, before and after the analysis (the faster counts),
* records the analysis' CPU time in user and system mode (system: mostly first touches of fresh memory) and the
  CPU time the hypervisor gave other guests meanwhile (a virtual machine's "steal"),
* times the peer kernels on the same masks (scipy vs edt for the EDT, scipy vs
  cc3d for labelling, the `localthickness` package vs ctbone's local thickness),
* optionally times one snapshot.

Usage:  python scripts/bench.py [--sizes 256,512,long,wide] [--repeat N] [--render] [--localthickness]
Prints Markdown tables (docs/performance.md holds the latest, with the machine). On a shared machine one
run moves by 10-20 %: --repeat runs each size N times (each in its own process) and reports the median
analysis time and peak with the range, against the fastest SimpleITK read.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".bench-cache"

# (z, y, x) shapes; the voxel size is chosen so a mouse long bone fills the field as in a real scan
SIZES = {
    "256": {"shape": (256, 256, 256), "voxel_mm": 0.0085},
    "512": {"shape": (512, 512, 512), "voxel_mm": 0.00425},
    "long": {"shape": (1800, 300, 300), "voxel_mm": 0.0075},
    # the 256 bone's section in a field three times as wide (a scan not cropped to the bone: ~7 % of each slice)
    "wide": {"shape": (512, 768, 768), "voxel_mm": 0.0085},
}


def phantom_folder(name: str) -> Path:
    from ctbone.phantoms import PhantomSpec, write_phantom

    folder = CACHE / f"phantom_{name}"
    if (folder / "truth.json").exists():
        return folder / "dicom"
    cfg = SIZES[name]
    z = cfg["shape"][0]
    spec = PhantomSpec(
        voxel_mm=cfg["voxel_mm"], length_mm=z * cfg["voxel_mm"], shape=cfg["shape"], supersample=1, noise_hu=60.0,
        lesions=({"kind": "perforation", "z_mm": 0.6 * z * cfg["voxel_mm"], "angle_deg": 30, "radius_mm": 0.1},
                 {"kind": "blastic", "z_mm": 0.75 * z * cfg["voxel_mm"], "angle_deg": 200, "half_length_mm": 0.3}),
    )
    t0 = time.perf_counter()
    write_phantom(spec, folder, seed=0, distractors=False)
    print(f"# wrote {name} phantom in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return folder / "dicom"


class PeakRSS:
    """Samples this process's RSS every 20 ms; `.peak_mb` since the last reset, `.since_mark_mb` since the last
    mark (a stage's own peak: the stages are marked as they start)."""

    def __init__(self):
        import psutil

        self._proc = psutil.Process()
        self.peak = 0
        self.since_mark = 0
        self._lock = threading.Lock()  # a mark between the sampler's read and write must not be undone
        self._stop = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self._stop:
            rss = self._proc.memory_info().rss
            with self._lock:
                self.peak = max(self.peak, rss)
                self.since_mark = max(self.since_mark, rss)
            time.sleep(0.02)

    def reset(self):
        with self._lock:
            self.peak = self.since_mark = self._proc.memory_info().rss

    def mark(self):
        with self._lock:
            self.since_mark = self._proc.memory_info().rss

    @property
    def peak_mb(self):
        return self.peak / 2**20

    @property
    def since_mark_mb(self):
        return self.since_mark / 2**20


def steal_s() -> float:
    """CPU seconds the hypervisor has given other guests since boot (all CPUs; /proc/stat), NaN off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def cpu_use(before, after) -> dict:
    """The analysis' CPU seconds in user and system mode, and its page faults, from two getrusage readings.

    System time is nearly all first touches of fresh memory (the kernel maps and zeroes each 4 kB page). On a
    virtual machine its cost per page depends on whether the host has backed that memory yet, not on ctbone:
    on this project's VM one 512^3 analysis spent 4.3 s in it and the next, in the same process, 2.2 s (2.2 and
    0.75 GB of fresh pages), so two runs of one commit can differ by seconds; this column shows when they do."""
    return {"cpu_user_s": round(after.ru_utime - before.ru_utime, 2),
            "cpu_sys_s": round(after.ru_stime - before.ru_stime, 2),
            "page_faults": int(after.ru_minflt - before.ru_minflt)}


def best_of(fn, repeat=3):
    times = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def sitk_read(folder: Path):
    """The yardstick: SimpleITK's ImageSeriesReader on the series."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def yardstick_s(name: str) -> float:
    """SimpleITK's read of the size's series, the faster of two, in a process of its own."""
    out = subprocess.run([sys.executable, __file__, "--sitk-read", name], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["sitk_read_s"]


def run_one(name: str, render: bool, with_localthickness: bool, retain: bool = True) -> dict:
    import ctbone
    from ctbone.memory import trim_heap

    folder = phantom_folder(name)
    rss = PeakRSS()
    row = {"size": name}
    # the yardstick at its quietest: also read before this process has read or analysed anything (below it is
    # read again after the analysis and the faster counts). Right after an analysis SimpleITK's read in its own
    # process took up to 2x as long for a few seconds, all of it in the kernel (system time 0.9 -> 2.5 s, the
    # same page faults): a slower yardstick would flatter the ratio
    sitk_before = yardstick_s(name)

    if retain:  # as the ctbone command and the batch workers do (ctbone.memory)
        from ctbone.memory import retain_freed_memory

        retain_freed_memory()

    trim_heap()
    rss.reset()
    baseline = rss.peak_mb
    # read once before the analysis, as the ctbone command does: a second read first would leave the heap
    # holding the first scan's freed pages apart from the second's (2114 -> 2343 MB at 512^3); timed again below
    row["read_s"], volume = best_of(lambda: ctbone.read_scan(folder), 1)
    row["int16_mb"] = volume.array.size * 2 / 2**20
    scan = ctbone.HandedOver(volume)  # as the ctbone command does: the analysis drops it once the bone is cut out
    del volume
    row["read_peak_mb"] = rss.peak_mb - baseline

    stage_peaks, current = {}, []

    def progress(stage):  # each stage's own peak, above the baseline like the analysis' peak
        if current:
            stage_peaks[current[-1]] = rss.since_mark_mb - baseline
        current.append(stage)
        rss.mark()

    trim_heap()  # peaks count from the memory in use, not the read's freed memory the heap kept
    rss.reset()
    before, stolen = resource.getrusage(resource.RUSAGE_SELF), steal_s()
    t0 = time.perf_counter()
    result = ctbone.analyze(scan, render=False, progress=progress)
    row["analyze_s"] = time.perf_counter() - t0
    row.update(cpu_use(before, resource.getrusage(resource.RUSAGE_SELF)))
    # the machine's share taken by other guests meanwhile: the same work's user time moves with it
    row["steal_s"] = round(steal_s() - stolen, 2)
    row["analyze_peak_mb"] = rss.peak_mb - baseline
    row["stages_s"] = result.info["timings_s"]
    if current:
        stage_peaks[current[-1]] = rss.since_mark_mb - baseline
    row["stage_peaks_mb"] = {k: round(v) for k, v in stage_peaks.items()}
    row["peak_over_int16"] = (rss.peak_mb - baseline) / row["int16_mb"]
    row["read_s"] = min(row["read_s"], best_of(lambda: ctbone.read_scan(folder), 1)[0])
    # the yardstick in a process of its own, as SimpleITK is used: read in this process before the analysis, its
    # freed memory left the analysis' heap laid out differently (+80 MB at 512^3, +350 MB on the wide field);
    # read after it, it found ctbone's kept memory and ran faster than it does alone (0.39 vs 0.50 s at 512^3)
    row["sitk_read_s"] = min(sitk_before, yardstick_s(name))

    bone = result.masks["bone"].array.astype(bool)
    spacing = result.masks["bone"].spacing
    row["bone_mask_shape"] = list(bone.shape)
    from scipy import ndimage

    import cc3d
    import edt

    row["edt_pkg_s"], _ = best_of(lambda: edt.edt(bone, anisotropy=spacing), 1)
    row["scipy_edt_s"], _ = best_of(lambda: ndimage.distance_transform_edt(bone, sampling=spacing), 1)
    row["cc3d_s"], _ = best_of(lambda: cc3d.connected_components(bone, connectivity=26), 1)
    row["scipy_label_s"], _ = best_of(lambda: ndimage.label(bone, structure=np.ones((3, 3, 3)))[0], 1)

    from ctbone.measure.thickness import local_thickness

    trab = result.masks["trabecular"].array.astype(bool)
    row["ctbone_thickness_s"], _ = best_of(lambda: local_thickness(bone, spacing_mm=spacing), 1)
    if with_localthickness:
        import localthickness as lt

        row["localthickness_s"], _ = best_of(lambda: lt.local_thickness(bone, scale=1), 1)
    row["trabecular_voxels"] = int(trab.sum())

    if render:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            row["render_s"], _ = best_of(lambda: ctbone.render_snapshot(result, Path(tmp) / "s.png"), 1)
    row["process_peak_mb"] = rss.peak_mb
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| scan | SimpleITK read s | ctbone read s | analyze s (no render) | analyze / SimpleITK read | peak MB (× int16) "
        "| CPU s (user / system) | stolen s | thickness s (ctbone / localthickness) | EDT s (edt / scipy) "
        "| labels s (cc3d / scipy) | render s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lt = f"{r['ctbone_thickness_s']:.1f} / {r['localthickness_s']:.1f}" if "localthickness_s" in r else \
            f"{r['ctbone_thickness_s']:.1f} / –"
        runs = r.get("analyze_s_runs", [])
        spread = f" ({min(runs):.1f}–{max(runs):.1f}, {len(runs)} runs)" if len(runs) > 1 else ""
        lines.append(
            f"| {r['size']} | {r['sitk_read_s']:.2f} | {r['read_s']:.2f} | {r['analyze_s']:.1f}{spread} | "
            f"{r['analyze_s'] / r['sitk_read_s']:.1f}× | {r['analyze_peak_mb']:.0f} ({r['peak_over_int16']:.1f}×) | "
            f"{r.get('cpu_user_s', float('nan')):.1f} / {r.get('cpu_sys_s', float('nan')):.1f} | "
            f"{r.get('steal_s', float('nan')):.1f} | {lt} | "
            f"{r['edt_pkg_s']:.2f} / {r['scipy_edt_s']:.2f} | {r['cc3d_s']:.2f} / {r['scipy_label_s']:.2f} | "
            f"{r.get('render_s', float('nan')):.1f} |"
        )
    stage_names = list(dict.fromkeys(k for r in rows for k in r["stages_s"]))  # in the order they ran
    lines += ["", "| scan | " + " | ".join(f"{s}: s, peak MB" for s in stage_names) + " |",
              "|---|" + "---|" * len(stage_names)]
    for r in rows:
        peaks = r.get("stage_peaks_mb", {})
        lines.append(f"| {r['size']} | " + " | ".join(
            f"{r['stages_s'].get(s, float('nan')):.2f}, {peaks.get(s, float('nan')):.0f}" for s in stage_names) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,512,long")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size, each in a fresh process (median reported)")
    parser.add_argument("--render", action="store_true")
    parser.add_argument("--localthickness", action="store_true", help="also time the localthickness package (slow)")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc and numpy's huge-page advice as they are (the ctbone command keeps "
                             "freed memory and turns the advice off: ctbone.memory)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--sitk-read", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sitk_read:
        print(json.dumps({"sitk_read_s": best_of(lambda: sitk_read(phantom_folder(args.sitk_read)), 2)[0]}))
        return
    if args.one:
        print(json.dumps(run_one(args.one, args.render, args.localthickness, not args.default_malloc)))
        return
    CACHE.mkdir(exist_ok=True)
    rows = []
    for name in args.sizes.split(","):
        phantom_folder(name)
        cmd = [sys.executable, __file__, "--one", name] + (["--render"] if args.render else []) + \
              (["--localthickness"] if args.localthickness else []) + \
              (["--default-malloc"] if args.default_malloc else [])
        runs = []
        for _ in range(max(1, args.repeat)):
            out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
            if out.returncode != 0:
                print(f"# {name}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
                continue
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"# {name}: {json.dumps(runs[-1])}", file=sys.stderr)
        if runs:
            rows.append(median_row(runs))
    print(table(rows))


def median_row(runs: list[dict]) -> dict:
    """One row for several runs of a size: the median run by analysis time (its stages and peers with it),
    the fastest SimpleITK and ctbone reads, the median peak, and every run's analysis time."""
    ordered = sorted(runs, key=lambda r: r["analyze_s"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["sitk_read_s"] = min(r["sitk_read_s"] for r in runs)
    row["read_s"] = min(r["read_s"] for r in runs)
    row["analyze_peak_mb"] = float(np.median([r["analyze_peak_mb"] for r in runs]))
    row["peak_over_int16"] = row["analyze_peak_mb"] / row["int16_mb"]
    row["analyze_s_runs"] = [round(r["analyze_s"], 2) for r in runs]
    return row


if __name__ == "__main__":
    main()
