"""Fast stand-ins for ctbone.read_scan / ctbone.analyze used by the batch tests (module level: picklable)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ctbone.errors import ScanReadError
from ctbone.options import AnalysisOptions
from ctbone.result import AnalysisResult
from ctbone.volume import Volume


def write_fake_scan(folder: Path, value: float, *, corrupt: bool = False) -> Path:
    """A 'scan' folder holding scan.json; ``value`` drives every fake metric."""
    folder.mkdir(parents=True, exist_ok=True)
    text = "not json {" if corrupt else json.dumps({"value": value})
    (folder / "scan.json").write_text(text)
    return folder


def fake_read(path) -> Volume:
    path = Path(path)
    try:
        data = json.loads((path / "scan.json").read_text())
    except (OSError, ValueError) as exc:
        raise ScanReadError(f"{path}: not a scan ({exc.__class__.__name__}). Potential fix: check the file") from exc
    array = np.full((6, 5, 4), data["value"], dtype=np.float32)
    return Volume(array, spacing=(0.02, 0.02, 0.02), unit="HU",
                  meta={"source": str(path), "series_uid": f"1.2.3.{int(data['value'] * 10)}"})


def fake_analyze(volume, reference=None, *, options=None, **_):
    options = options or AnalysisOptions()
    v = float(volume.array.mean())
    # every analysis warns once, as ctbone's checks do: the batch must keep what a worker logged
    logging.getLogger("ctbone.fake").warning("%s: fake check on a scan of mean %.1f", volume.meta.get("source"), v)
    bone = np.zeros(volume.shape, dtype=np.uint8)
    bone[1:5, 1:4, 1:3] = 1
    masks = {"bone": volume.with_array(bone, unit="mask")}
    metrics = {"threshold_hu": 400.0 if options.threshold == "auto" else float(options.threshold),
               "bv_mm3": v / 3.0, "bv_tv_pct": 10.0 + v, "cortical_defect_count": int(v) % 5,
               "lytic_volume_mm3": v * 0.001, "blastic_volume_mm3": -0.0 + v / 7}
    if reference is not None:
        metrics["bone_lost_mm3"] = abs(v - float(reference.array.mean()))
    lesions = [{"id": i + 1, "kind": "lytic", "volume_mm3": v / (i + 2), "area_mm2": 0.1, "max_diameter_mm": 0.2,
                "centroid_x_mm": -1.5, "centroid_y_mm": 0.25, "centroid_z_mm": 2.0, "mean_density": v}
               for i in range(int(v) % 3)]
    return AnalysisResult(metrics=metrics, masks=masks, image=volume, lesions=lesions, options=options,
                          info={"threshold_method": "fake", "source": volume.meta.get("source"),
                                "series_uid": volume.meta.get("series_uid")})
