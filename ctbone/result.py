"""`AnalysisResult`: what `ctbone.analyze` returns for one scan."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .options import AnalysisOptions
from .volume import Volume

# the columns of a lesion row, in order (`measure.lesions` makes the rows, `report` writes them to lesions.csv)
LESION_COLUMNS = ("id", "kind", "volume_mm3", "area_mm2", "max_diameter_mm", "centroid_x_mm", "centroid_y_mm",
                  "centroid_z_mm", "mean_density")


class MaskSet(Mapping):
    """Mask name -> `Volume`, each held or made when read.

    A value given as a callable (e.g. `ctbone.segment.CompartmentMask`) is called at each read and gives a new
    `Volume`: the analysis hands its compartments over as bits, not as crop-sized masks (73 MB each at 512³), and
    the outputs unpack them one at a time as they write them. Read a mask once and keep the `Volume` when it is
    needed several times.
    """

    def __init__(self, items: Mapping | None = None):
        self._items = dict(items or {})

    def __getitem__(self, name: str) -> Volume:
        item = self._items[name]
        return item() if callable(item) else item

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"MaskSet({', '.join(self._items)})"


@dataclass
class AnalysisResult:
    """Metrics, masks and lesions of one analysed scan.

    Attributes
    ----------
    metrics : dict
        Metric name (SPEC.md, unit in the name) -> number, in a stable order.
    masks : Mapping
        Mask name -> `Volume` (unit "mask", uint8), all on the grid of ``image``:
        "bone", "envelope", "cortex", "marrow", "trabecular", "defects", "lytic",
        "blastic" (those computed). From `ctbone.analyze` a `MaskSet`: the compartments are made when read (a new
        array each time).
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
    masks: Mapping[str, Volume]
    image: Volume
    lesions: list[dict[str, Any]] = field(default_factory=list)
    options: AnalysisOptions = field(default_factory=AnalysisOptions)
    info: dict[str, Any] = field(default_factory=dict)
    cortex_model: dict[str, Any] | None = None
