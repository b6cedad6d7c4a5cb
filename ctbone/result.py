"""`AnalysisResult`: what `ctbone.analyze` returns for one scan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .options import AnalysisOptions
from .volume import Volume

# the columns of a lesion row, in order (`measure.lesions` makes the rows, `report` writes them to lesions.csv)
LESION_COLUMNS = ("id", "kind", "volume_mm3", "area_mm2", "max_diameter_mm", "centroid_x_mm", "centroid_y_mm",
                  "centroid_z_mm", "mean_density")


@dataclass
class AnalysisResult:
    """Metrics, masks and lesions of one analysed scan.

    Attributes
    ----------
    metrics : dict
        Metric name (SPEC.md, unit in the name) -> number, in a stable order.
    masks : dict
        Mask name -> `Volume` (unit "mask", uint8), all on the grid of ``image``:
        "bone", "envelope", "cortex", "marrow", "trabecular", "defects", "lytic",
        "blastic" (those computed).
    image : Volume
        The (calibrated, cropped) image the masks live on.
    lesions : list of dict
        One row per lesion, `LESION_COLUMNS` first.
    options : AnalysisOptions
    info : dict
        Provenance and extra information (threshold method, registration, warnings).
    cortex_model : dict or None
        The lesion stage's modelled intact cortex (`LesionMeasurement.cortex_model`), drawn on the QC slices;
        not written to metrics.json.
    """

    metrics: dict[str, Any]
    masks: dict[str, Volume]
    image: Volume
    lesions: list[dict[str, Any]] = field(default_factory=list)
    options: AnalysisOptions = field(default_factory=AnalysisOptions)
    info: dict[str, Any] = field(default_factory=dict)
    cortex_model: dict[str, Any] | None = None
