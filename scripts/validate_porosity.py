"""Validate cortical porosity (Ct.Po) against phantom truth; print the table of docs/metrics.md.

Phantoms with known canals (oblique tubes from the marrow to the periosteum), with and without
lesions, across voxel size, canal diameter and scanner blur; and pore-free phantoms with lesions,
where any porosity measured is false. Each row: truth, measured, and their ratio.

Usage: python scripts/validate_porosity.py [--quick]
"""

from __future__ import annotations

import argparse
import time

from ctbone import analyze
from ctbone.phantoms import PhantomSpec, make_phantom

LESIONS = (
    {"kind": "perforation", "z_mm": 0.5, "angle_deg": 0.0, "radius_mm": 0.1},
    {"kind": "lytic_cavity", "z_mm": 1.0, "angle_deg": 200.0, "radius_mm": 0.2},
    {"kind": "blastic", "z_mm": 1.1, "angle_deg": 300.0, "half_length_mm": 0.4},
)
SHORT_LESIONS = (
    {"kind": "perforation", "z_mm": 0.3, "angle_deg": 0.0, "radius_mm": 0.1},
    {"kind": "blastic", "z_mm": 0.5, "angle_deg": 200.0, "half_length_mm": 0.25},
)

# (label, PhantomSpec fields, noise seed)
CASES = [
    ("pore-free, lesions, 15 µm", dict(voxel_mm=0.015, length_mm=1.6, lesions=LESIONS), 1),
    ("pore-free, lesions, 25 µm", dict(voxel_mm=0.025, length_mm=1.6, lesions=LESIONS), 1),
    ("pore-free, lesions, 40 µm", dict(voxel_mm=0.04, length_mm=1.6, lesions=LESIONS), 1),
    ("30 µm canals, 10 µm", dict(voxel_mm=0.01, length_mm=1.0, vascular_canals=6, canal_diameter_mm=0.03), 0),
    ("40 µm canals, 10 µm", dict(voxel_mm=0.01, length_mm=1.0, vascular_canals=6, canal_diameter_mm=0.04), 0),
    ("60 µm canals, 10 µm", dict(voxel_mm=0.01, length_mm=1.0, vascular_canals=6, canal_diameter_mm=0.06), 0),
    ("60 µm canals + perforation + woven cap, 10 µm",
     dict(voxel_mm=0.01, length_mm=0.8, vascular_canals=6, canal_diameter_mm=0.06, supersample=2,
          lesions=SHORT_LESIONS), 2),
    ("30 µm canals, 7.5 µm", dict(voxel_mm=0.0075, length_mm=0.8, vascular_canals=6, canal_diameter_mm=0.03), 0),
    ("20 µm canals, 5 µm", dict(voxel_mm=0.005, length_mm=0.5, vascular_canals=6, canal_diameter_mm=0.02,
                                supersample=2), 0),
    ("20 µm canals, 5 µm, blur σ 5 µm", dict(voxel_mm=0.005, length_mm=0.5, vascular_canals=6,
                                             canal_diameter_mm=0.02, supersample=2, blur_sigma_mm=0.005), 0),
    ("30 µm canals, 5 µm", dict(voxel_mm=0.005, length_mm=0.5, vascular_canals=6, canal_diameter_mm=0.03,
                                supersample=2), 0),
    ("30 µm canals, 5 µm, blur σ 5 µm", dict(voxel_mm=0.005, length_mm=0.5, vascular_canals=6,
                                             canal_diameter_mm=0.03, supersample=2, blur_sigma_mm=0.005), 0),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the pore-free rows and the 10 µm canal rows only")
    args = parser.parse_args(argv)
    cases = [c for c in CASES if not args.quick or "5 µm" not in c[0]]
    print("| phantom (noise 60 HU, blur σ 10 µm unless stated) | truth % | measured % | measured / truth | s |")
    print("|---|---|---|---|---|")
    for label, fields, seed in cases:
        t0 = time.perf_counter()
        volume, truth = make_phantom(PhantomSpec(**{"metaphysis_length_mm": 0.0, **fields}), seed=seed)
        measured = analyze(volume).metrics["ct_po_pct"]
        ratio = f"{measured / truth['ct_po_pct']:.2f}" if truth["ct_po_pct"] > 0 else "–"
        print(f"| {label} | {truth['ct_po_pct']:.3f} | {measured:.4f} | {ratio} | {time.perf_counter() - t0:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
