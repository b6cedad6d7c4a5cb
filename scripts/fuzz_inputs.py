"""Corrupt input files at random and check that ctbone answers with its own one-line errors only.

Each round copies a valid input (a DICOM series plain and RLE-compressed, a TIFF stack, NIfTI / NRRD /
MetaImage files, Scanco ISQ and AIM files (gray values, and masks run-length compressed), a study manifest, a
Bruker *_rec.log), changes a few random bytes (or cuts the file short), and reads it with `ctbone.read_scan`
and `ctbone.io.scan_info` (the manifest with `read_manifest`, the log with `read_rec_log`). Anything but a
`CtboneError` is a bug: it reaches the user as a traceback. Exit status 1 when one was found, with the first
of each kind listed.

    python scripts/fuzz_inputs.py [--rounds 300] [--seed 0]

What it found when written (2026-12-07): corrupt DICOM header elements (pydicom parses values on access),
a Rust RLE decoder's panic (no Python Exception), numpy int64 overflow of corrupt Scanco voxel counts, a NaN
voxel size, a NUL in a manifest path; all fixed, with tests in tests/test_io_bad_input.py and beside.
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def make_sources(root: Path) -> dict[str, Path]:
    """One valid input of each kind under ``root``: name -> the path a reader is given."""
    import SimpleITK as sitk
    import tifffile
    from pydicom.uid import RLELossless

    from ctbone.io import write_dicom_series
    from ctbone.volume import Volume

    sys.path.insert(0, str(HERE.parent / "tests"))  # the tests' Scanco writers (ctbone only reads Scanco files)
    from scanco_files import write_aim, write_isq

    hu = np.random.default_rng(0).integers(-1000, 2000, (6, 24, 20)).astype(np.float32)
    sources = {}
    for name, syntax in (("dicom", None), ("dicom-rle", RLELossless)):
        write_dicom_series(Volume(hu, spacing=(0.05, 0.02, 0.03), unit="HU"), root / name, transfer_syntax=syntax)
        sources[name] = root / name
    (root / "tiff").mkdir()
    for i, page in enumerate(hu):
        tifffile.imwrite(root / "tiff" / f"slice_{i:04d}.tif", (page + 1000).astype(np.uint16))
    sources["tiff"] = root / "tiff"
    for suffix in ("nii.gz", "nrrd", "mha"):
        sitk.WriteImage(sitk.GetImageFromArray(hu.astype(np.int16)), str(root / f"scan.{suffix}"))
        sources[suffix] = root / f"scan.{suffix}"
    native = np.rint(0.24 * (1 + hu / 1000.0) * 8192).astype(np.int16)
    sources["isq"] = write_isq(root / "C0000001.ISQ", native, 10.0, calibration=(1603.5, -391.2, 0.24))
    for version in ("020", "030"):
        sources[f"aim{version}"] = write_aim(root / f"scan{version}.aim", native, 10.0, version=version,
                                             log={"Mu_Scaling": "8192", "Density: slope": "1603.5"})
    mask = (hu > 500).astype(np.int8) * np.int8(127)
    for compression in ("run-length bits", "run-length bytes"):
        sources[f"aim-{compression.split()[1]}"] = write_aim(root / f"seg_{compression.split()[1]}.aim", mask, 10.0,
                                                             compression=compression)
    (root / "study" / "scans" / "a").mkdir(parents=True)
    (root / "study" / "manifest.csv").write_text(
        "animal_id,group,limb,scan,roi_mm,threshold,spacing_mm\nM1,control,L,scans/a,1:2,auto,0.01\n")
    sources["manifest"] = root / "study" / "manifest.csv"
    (root / "rec").mkdir()
    (root / "rec" / "x_rec.log").write_text("[Reconstruction]\nPixel Size (um)=10.5\nMinimum for CS to Image "
                                            "Conversion=0.0\nMaximum for CS to Image Conversion=0.1\n")
    sources["rec.log"] = root / "rec" / "x_rec.log"
    return sources


def readers_for(name: str, target: Path):
    """The calls a corrupted input of kind ``name`` at ``target`` is read with."""
    import ctbone
    from ctbone.io import scan_info
    from ctbone.io.bruker_log import read_rec_log
    from ctbone.study.manifest import read_manifest

    if name == "manifest":
        return [lambda: read_manifest(target)]
    if name == "rec.log":
        return [lambda: read_rec_log(target.parent)]
    spacing = 0.02 if name == "tiff" else None
    return [lambda: ctbone.read_scan(target, spacing=spacing), lambda: scan_info(target, spacing=spacing)]


def corrupt(path: Path, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    for _ in range(rng.randint(1, 10)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    if rng.random() < 0.2:
        data = data[:rng.randrange(len(data))]
    path.write_bytes(bytes(data))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from ctbone.errors import CtboneError
    from ctbone.io.native_stderr import native_stderr_held

    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    rng = random.Random(args.seed)
    found: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sources = make_sources(Path(tmp) / "sources")
        work = Path(tmp) / "work"
        for round_ in range(args.rounds):
            name = rng.choice(sorted(sources))
            source = sources[name]
            shutil.rmtree(work, ignore_errors=True)
            copy = work / source.parent.name
            shutil.copytree(source.parent, copy)
            target = copy / source.name
            corrupt(rng.choice(sorted(p for p in target.iterdir() if p.is_file())) if target.is_dir() else target, rng)
            for read in readers_for(name, target):
                try:
                    with native_stderr_held("fuzz"):  # the libraries' own chatter is not what is checked
                        read()
                except CtboneError:
                    pass
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # noqa: BLE001 - anything else is the bug being looked for
                    where = traceback.extract_tb(exc.__traceback__)[-1]
                    key = f"{name}: {type(exc).__name__} at {Path(where.filename).name}:{where.lineno}"
                    found.setdefault(key, f"round {round_}: {str(exc)[:150]}")
    for key, detail in found.items():
        print(f"{key}  ({detail})")
    print(f"{args.rounds} rounds, {len(found)} kind(s) of escape")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
