"""Reading Scanco files: ctbone's reader against ITK's (itk-ioscanco), when ITK is importable.

The 512^3 bench phantom (scripts/bench.py's cache) is written once as an ISQ of native values
(.bench-cache/phantom_512/scan.isq, 256 MB) and its bone, thresholded, as an IPL-style mask: an AIM compressed
as "run-length bits" (seg.aim); each reader then runs in its own process, timed, with its peak resident memory.
ctbone memory-maps the ISQ and decodes the mask with numpy (`ctbone.io.scanco.decode_run_lengths`). ITK is not
a ctbone dependency: put it on PYTHONPATH to include it.

    python scripts/bench_scanco.py [--size 256|512]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE.parent / ".bench-cache"

# file -> name -> (import, read): only the read is timed
READERS = {
    "scan.isq": {
        "ctbone read_scan (float32 in memory)": ("import ctbone", "n = ctbone.read_scan(PATH).array.size"),
        "ctbone open_scan slabs (memory-mapped) + one 16-slice slab": (
            "import ctbone", "n = ctbone.open_scan(PATH, memory='slabs').read(0, 16).size"),
        "ITK imread (itk-ioscanco; int16, converted to HU)": (
            "import itk; itk.ScancoImageIO",
            "n = itk.array_view_from_image(itk.imread(PATH, imageio=itk.ScancoImageIO.New())).size"),
    },
    "seg.aim": {
        "ctbone read_scan (decoded, float32 in memory)": ("import ctbone", "n = ctbone.read_scan(PATH).array.size"),
        "ctbone decode only (int8)": (
            "from ctbone.io.scanco import scanco_voxels", "n = scanco_voxels(PATH).size"),
        "ITK imread (itk-ioscanco; signed char, as int16)": (
            "import itk; itk.ScancoImageIO",
            "n = itk.array_view_from_image(itk.imread(PATH, pixel_type=itk.SS, "
            "imageio=itk.ScancoImageIO.New())).size"),
    },
}


def isq_of_bench_phantom(size: int) -> Path:
    path = CACHE / f"phantom_{size}" / "scan.isq"
    if path.is_file():
        return path
    import numpy as np

    import ctbone

    sys.path.insert(0, str(HERE.parent / "tests"))  # the tests' ISQ writer (ctbone only reads ISQ)
    from scanco_files import write_isq

    hu = ctbone.read_scan(CACHE / f"phantom_{size}" / "dicom")
    native = np.rint(0.24 * (1 + hu.array / 1000.0) * 8192).clip(-32768, 32767).astype(np.int16)
    return write_isq(path, native, hu.spacing[0] * 1000.0, calibration=(1603.5, -391.2, 0.24))


def mask_of_bench_phantom(size: int, isq: Path) -> Path:
    """The phantom's bone (native values above 0.5 mg-equivalent of the ISQ's range) as a run-length-bits AIM."""
    path = isq.with_name("seg.aim")
    if path.is_file():
        return path
    import numpy as np

    from ctbone.io.scanco import read_scanco_header, scanco_voxels

    sys.path.insert(0, str(HERE.parent / "tests"))
    from scanco_files import write_aim

    header = read_scanco_header(isq)
    bone = (np.asarray(scanco_voxels(isq, header)) > 0.24 * 2.0 * 8192).astype(np.int8) * np.int8(127)
    return write_aim(path, bone, header.spacing_zyx_mm[0] * 1000.0, compression="run-length bits")


def run(code: tuple[str, str], path: Path) -> dict | None:
    # the peak is VmHWM (reset by exec), not ru_maxrss, which a child inherits from the process that forked it
    setup, read = code
    probe = (f"import time; PATH = {str(path)!r}; {setup}; t = time.perf_counter(); {read}; "
             "s = time.perf_counter() - t; "
             "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]; "
             "print(__import__('json').dumps({'s': s, 'peak_mb': int(hwm) / 1024}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, choices=(256, 512))
    args = parser.parse_args()
    if not (CACHE / f"phantom_{args.size}" / "dicom").is_dir():
        sys.exit(f"no cached {args.size}^3 phantom: run python scripts/bench.py --sizes {args.size} first")
    isq = isq_of_bench_phantom(args.size)
    files = {"scan.isq": isq, "seg.aim": mask_of_bench_phantom(args.size, isq)}
    for kind, readers in READERS.items():
        path = files[kind]
        print(f"{path} ({path.stat().st_size / 2**20:.1f} MB)")
        for name, code in readers.items():
            runs = [run(code, path) for _ in range(2)]
            if None in runs:
                print(f"  {name:62s} not available")
                continue
            best = min(runs, key=lambda r: r["s"])
            print(f"  {name:62s} {best['s']:6.2f} s   peak {best['peak_mb']:6.0f} MB (process)")


if __name__ == "__main__":
    main()
