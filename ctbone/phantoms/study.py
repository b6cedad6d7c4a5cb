"""The demo study: control and treated animals, tumour limb with lesions, intact contralateral limb.

The study is defined by ``phantoms/demo_study.json`` (the repository's copy is
the reference; `DEMO_STUDY` below is the same definition for installs without
the repository, and a test keeps the two equal). Scans are regenerated on
demand, never committed.

Definition format::

    {"name": ..., "tumour_limb": "R",
     "base": {PhantomSpec fields shared by every scan},
     "animals": [{"animal_id": "C1", "group": "control",
                  "spec": {per-animal PhantomSpec fields}, "lesions": [lesion dicts]}, ...]}

Each animal gives two scans: ``scans/<animal>_<tumour limb>/`` with its lesions, and
``scans/<animal>_<other limb>/``, the mirrored intact twin (same bone, no lesions).
"""

from __future__ import annotations

import copy
import csv
import json
import logging
from pathlib import Path

from .spec import PhantomSpec, PhantomSpecError, intact_twin, mirrored

log = logging.getLogger(__name__)

_REPO_DEFINITION = Path(__file__).resolve().parents[2] / "phantoms" / "demo_study.json"

MANIFEST_COLUMNS = ("animal_id", "group", "limb", "scan", "reference", "mirror_reference", "truth")

_BASE = {
    "voxel_mm": 0.02, "length_mm": 4.0, "shape": [200, 96, 120], "supersample": 4, "blur_sigma_mm": 0.01,
    "noise_hu": 60.0, "outer_a_mm": 0.7, "outer_b_mm": 0.52, "cortical_thickness_mm": 0.17,
    "metaphysis_length_mm": 1.2, "metaphysis_flare_pct": 15.0, "soft_tissue_mm": 0.2, "air_margin_mm": 0.04,
    "vascular_canals": 6,
    # denser than the library default (700 HU) so the woven outgrowths stand above the default
    # auto threshold (half-way between soft tissue and cortex, ~720 HU) and the demo shows them
    "woven_hu": 950.0,
}
DEMO_STUDY = {
    "name": "ctbone demo study: intratibial tumour model, control vs treated",
    "tumour_limb": "R",
    "base": _BASE,
    "animals": [
        {"animal_id": "C1", "group": "control", "spec": {"geometry_seed": 1}, "lesions": []},
        {"animal_id": "C2", "group": "control", "spec": {"geometry_seed": 2, "outer_a_mm": 0.72},
         "lesions": [{"kind": "perforation", "z_mm": 2.6, "angle_deg": 60.0, "radius_mm": 0.06}]},
        {"animal_id": "C3", "group": "control", "spec": {"geometry_seed": 3, "cortical_thickness_mm": 0.16},
         "lesions": [{"kind": "lytic_cavity", "z_mm": 2.0, "angle_deg": 120.0, "radius_mm": 0.06}]},
        {"animal_id": "T1", "group": "treated", "spec": {"geometry_seed": 4},
         "lesions": [{"kind": "perforation", "z_mm": 2.4, "angle_deg": 30.0, "radius_mm": 0.15},
                     {"kind": "perforation", "z_mm": 3.1, "angle_deg": 150.0, "radius_mm": 0.08},
                     {"kind": "lytic_cavity", "z_mm": 0.9, "angle_deg": 250.0, "radius_mm": 0.25},
                     {"kind": "blastic", "z_mm": 1.8, "angle_deg": 300.0, "thickness_mm": 0.15}]},
        {"animal_id": "T2", "group": "treated", "spec": {"geometry_seed": 5, "outer_a_mm": 0.68},
         "lesions": [{"kind": "perforation", "z_mm": 2.2, "angle_deg": 200.0, "radius_mm": 0.12},
                     {"kind": "perforation", "z_mm": 3.3, "angle_deg": 0.0, "radius_mm": 0.06},
                     {"kind": "lytic_cavity", "z_mm": 1.0, "angle_deg": 90.0, "radius_mm": 0.3}]},
        {"animal_id": "T3", "group": "treated", "spec": {"geometry_seed": 6, "cortical_thickness_mm": 0.18},
         "lesions": [{"kind": "perforation", "z_mm": 2.0, "angle_deg": 45.0, "radius_mm": 0.1},
                     {"kind": "perforation", "z_mm": 2.8, "angle_deg": 135.0, "radius_mm": 0.1},
                     {"kind": "perforation", "z_mm": 3.4, "angle_deg": 270.0, "radius_mm": 0.1},
                     {"kind": "blastic", "z_mm": 1.6, "angle_deg": 90.0, "thickness_mm": 0.12,
                      "extent_deg": 80.0, "half_length_mm": 0.5}]},
    ],
}


def load_definition(definition=None) -> dict:
    """The study definition: a dict, a JSON path, or None for ``phantoms/demo_study.json`` (or its built-in copy)."""
    if isinstance(definition, dict):
        return copy.deepcopy(definition)
    path = Path(definition) if definition is not None else _REPO_DEFINITION
    if definition is None and not path.exists():
        return copy.deepcopy(DEMO_STUDY)
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PhantomSpecError(f"{path}: cannot read the study definition ({exc}). "
                               "Potential fix: pass a valid JSON file") from exc


def study_scans(definition=None) -> list[dict]:
    """Every scan of a study: animal_id, group, limb, name, spec, reference name, noise seed offset."""
    d = load_definition(definition)
    tumour = d.get("tumour_limb", "R")
    if tumour not in ("L", "R"):
        raise PhantomSpecError(f"study definition: tumour_limb must be 'L' or 'R', got {tumour!r}")
    other = "L" if tumour == "R" else "R"
    scans, seen = [], set()
    for i, animal in enumerate(d.get("animals", [])):
        aid, group = str(animal["animal_id"]), str(animal["group"])
        if aid in seen:
            raise PhantomSpecError(f"study definition: animal_id {aid!r} appears twice")
        seen.add(aid)
        fields = {**d.get("base", {}), **animal.get("spec", {}), "side": tumour,
                  "lesions": animal.get("lesions", [])}
        spec = PhantomSpec.from_dict(fields)
        contra = mirrored(intact_twin(spec))
        scans.append({"animal_id": aid, "group": group, "limb": tumour, "name": f"{aid}_{tumour}", "spec": spec,
                      "reference": f"{aid}_{other}", "seed_offset": 2 * i})
        scans.append({"animal_id": aid, "group": group, "limb": other, "name": f"{aid}_{other}", "spec": contra,
                      "reference": "", "seed_offset": 2 * i + 1})
    if not scans:
        raise PhantomSpecError("study definition: no animals")
    return scans


def manifest_rows(definition=None) -> list[dict]:
    """Manifest rows (tumour limbs only, each with its contralateral scan as mirrored reference)."""
    rows = []
    for scan in study_scans(definition):
        if not scan["reference"]:
            continue
        rows.append({"animal_id": scan["animal_id"], "group": scan["group"], "limb": scan["limb"],
                     "scan": f"scans/{scan['name']}/dicom", "reference": f"scans/{scan['reference']}/dicom",
                     "mirror_reference": "yes", "truth": f"scans/{scan['name']}/truth.json"})
    return rows


def _scalar_truth(truth: dict) -> dict:
    return {k: v for k, v in truth.items() if isinstance(v, (int, float, str)) or v is None}


def write_study(outdir, *, seed: int = 0, definition=None, progress=None) -> Path:
    """Write every scan of a study, its manifest and its truth table.

    Parameters
    ----------
    outdir : path
        Gets ``scans/<animal>_<limb>/`` (DICOM + truth.json, see `write_phantom`),
        ``manifest.csv`` (animal_id, group, limb, scan, reference, mirror_reference, truth:
        one row per tumour limb, the contralateral scan as reference) and ``truth.csv``
        (one row per scan, every scalar truth value).
    seed : int, keyword-only
        Base noise seed; each scan gets its own derived seed.
    definition : dict or path, keyword-only
        Study definition (default ``phantoms/demo_study.json``).
    progress : callable, optional
        Called with each scan's name once it is written (for a progress bar).

    Returns
    -------
    Path
        ``outdir/manifest.csv``.
    """
    from .write import write_phantom

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    scans = study_scans(definition)
    truth_rows = []
    for scan in scans:
        folder = outdir / "scans" / scan["name"]
        scan_seed = seed * 1000 + scan["seed_offset"]
        write_phantom(scan["spec"], folder, seed=scan_seed, patient_id=f"{scan['animal_id']}")
        truth = json.loads((folder / "truth.json").read_text())
        truth_rows.append({"animal_id": scan["animal_id"], "group": scan["group"], "limb": scan["limb"],
                           "scan": f"scans/{scan['name']}/dicom", **_scalar_truth(truth)})
        if progress:
            progress(scan["name"])
    manifest = outdir / "manifest.csv"
    _write_csv(manifest, manifest_rows(definition), list(MANIFEST_COLUMNS))
    columns = list(dict.fromkeys(k for row in truth_rows for k in row))
    _write_csv(outdir / "truth.csv", truth_rows, columns)
    log.info("wrote %d phantom scans and %s", len(scans), manifest)
    return manifest


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
