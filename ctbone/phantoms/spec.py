"""`PhantomSpec`: every parameter of a digital mouse long bone, in mm and HU.

A spec is pure data (frozen, JSON round-trip); `ctbone.phantoms.make_phantom`
turns it into an image and its exact ground truth.

Tissue values (HU), chosen from what mouse micro-CT scans calibrated to HU show:

* air -1000 (definition of the HU scale);
* soft tissue 40 (muscle, 35–55 HU at clinical energies);
* marrow 30 (red marrow is a water/fat mix, slightly below muscle);
* tumour 45 (a cellular soft-tissue mass, fills lytic lesions);
* cortical bone 1400 (mouse cortical TMD 1100–1300 mg HA/cm³, well above
  trabecular bone at every calibration we have seen);
* trabecular bone 1000 (less mineralised than cortex);
* woven bone 700 (under-mineralised osteoblastic bone, Roudier et al. 2008):
  it must stay well above soft tissue so that a threshold can find it, yet
  clearly below lamellar bone so that its density is worth reporting.

Lesions are given in the bone's own frame: ``angle_deg`` is measured in the
(x, y) plane from +x towards +y for a right limb; a left limb (``side="L"``)
is the exact x-mirror of the right one, lesions included.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..errors import CtboneError


class PhantomSpecError(CtboneError, ValueError):
    """A phantom definition is invalid (unknown field, bad lesion, impossible geometry)."""


# default parameters of each lesion kind; None means "derived from the bone" (see geometry.py)
LESION_DEFAULTS: dict[str, dict[str, Any]] = {
    # a cylinder drilled radially through the cortex, from half-way between the axis and the endosteum outwards
    "perforation": {"z_mm": None, "angle_deg": 0.0, "radius_mm": 0.1},
    # an ellipsoid (radius_mm across, half_length_mm along z) centred depth_mm under the periosteal surface
    # (default: at the endosteal surface): eats cortex from the marrow side and the bone next to it
    "lytic_cavity": {"z_mm": None, "angle_deg": 0.0, "radius_mm": 0.2, "depth_mm": None, "half_length_mm": None},
    # a porous woven-bone cap on the periosteal surface: thickness_mm at its centre, thinning to 0 at
    # +-extent_deg/2 around the bone and +-half_length_mm along z
    "blastic": {"z_mm": None, "angle_deg": 0.0, "extent_deg": 100.0, "half_length_mm": 0.6,
                "thickness_mm": 0.15, "porosity": 0.35, "pore_mm": 0.08, "hu": None},
}
LYTIC_KINDS = ("perforation", "lytic_cavity")


# fine samples per voxel and axis: 8 (512 per voxel) already resolves partial volume far below the noise; a
# larger factor only costs time and memory (100 took 10 GB and more before anything was drawn)
MAX_SUPERSAMPLE = 8
# voxels of a phantom built in memory (float32: 4 GB, and the builder's working arrays beside it)
MAX_PHANTOM_VOXELS = 1_000_000_000


@dataclass(frozen=True)
class PhantomSpec:
    """Geometry, tissue values and lesions of one synthetic mouse long-bone scan.

    All lengths are mm, all intensities HU. The bone axis is z; the scan covers
    z = 0 (centre of the first slice, the metaphyseal end) to ``length_mm``.

    Parameters
    ----------
    voxel_mm : float
        In-plane (x, y) voxel size of the output image.
    slice_mm : float or None
        Slice spacing along z; None = ``voxel_mm`` (isotropic, as micro-CT reconstructs).
    length_mm : float
        Scan length along z (number of slices = round(length_mm / slice spacing)).
    shape : (3,) ints or None
        Output (z, y, x) shape; None = from the length and the bone size plus margins.
    supersample : int
        Fine-grid factor per axis: geometry is evaluated on voxels ``voxel_mm / supersample``
        and block-averaged (partial volume). Truth is counted on that fine grid.
    blur_sigma_mm : float
        Gaussian blur (system PSF) applied after block averaging; 0 = none.
    noise_hu : float
        Standard deviation of additive Gaussian noise; 0 = none.
    outer_a_mm, outer_b_mm : float
        Periosteal semi-axes (x, y) at mid-shaft.
    cortical_thickness_mm : float
        Cortical thickness at mid-shaft (the marrow cavity has semi-axes a - t, b - t).
    taper_pct : float
        The outer semi-axes shrink linearly by this percentage of their mid-shaft value
        from z = 0 to z = length_mm.
    metaphysis_length_mm : float
        Length of the metaphysis at z = 0: the bone flares, the cortex thins and
        trabecular rods fill the marrow. 0 = a plain tube.
    metaphysis_flare_pct : float
        Extra outer size at z = 0 (smoothly back to 0 % at the end of the metaphysis).
    metaphysis_cortical_thickness_mm : float
        Cortical thickness at z = 0.
    tb_rod_diameter_mm, tb_spacing_mm, tb_keep_fraction : float
        Trabecular rods: diameter, spacing of the jittered lattice they connect,
        fraction of lattice edges kept.
    vascular_canals : int
        Number of normal vascular (nutrient) canals: thin oblique tubes through the cortex,
        part of the intact bone (cortical porosity), never lesions or defects.
    canal_diameter_mm : float
        Their diameter (0.02 mm: an opening of 0.0003 mm², far below a defect's 0.005 mm²).
    soft_tissue_mm, air_margin_mm : float
        Thickness of the soft-tissue sleeve beyond the widest bone, and air around it.
    side : "R" or "L"
        A left limb is the x-mirror of the right one.
    geometry_seed : int
        Seed of the random parts of the *geometry* (rod lattice jitter, woven-bone pores);
        the noise seed is separate (``make_phantom(seed=)``) so twins share their geometry.
    lesions : tuple of dict
        Each ``{"kind": "perforation" | "lytic_cavity" | "blastic", "z_mm": ..., ...}``;
        missing parameters take `LESION_DEFAULTS`.
    """

    voxel_mm: float = 0.02
    slice_mm: float | None = None
    length_mm: float = 5.0
    shape: tuple[int, int, int] | None = None
    supersample: int = 4
    blur_sigma_mm: float = 0.01
    noise_hu: float = 60.0
    air_hu: float = -1000.0
    soft_tissue_hu: float = 40.0
    marrow_hu: float = 30.0
    tumour_hu: float = 45.0
    cortical_hu: float = 1400.0
    trabecular_hu: float = 1000.0
    woven_hu: float = 700.0
    outer_a_mm: float = 0.75
    outer_b_mm: float = 0.55
    cortical_thickness_mm: float = 0.18
    taper_pct: float = 10.0
    metaphysis_length_mm: float = 1.2
    metaphysis_flare_pct: float = 20.0
    metaphysis_cortical_thickness_mm: float = 0.06
    tb_rod_diameter_mm: float = 0.05
    tb_spacing_mm: float = 0.18
    tb_keep_fraction: float = 0.75
    vascular_canals: int = 0
    canal_diameter_mm: float = 0.02
    soft_tissue_mm: float = 0.2
    air_margin_mm: float = 0.06
    side: str = "R"
    geometry_seed: int = 0
    lesions: tuple[dict, ...] = field(default_factory=tuple)

    def __post_init__(self):
        for f in fields(self):
            if f.name in ("shape", "side", "lesions", "supersample", "geometry_seed", "vascular_canals", "slice_mm"):
                continue
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or value != value:
                raise PhantomSpecError(f"phantom spec: {f.name} must be a number, got {value!r}")
            object.__setattr__(self, f.name, float(value))
        positive = ("voxel_mm", "length_mm", "outer_a_mm", "outer_b_mm", "cortical_thickness_mm",
                    "tb_rod_diameter_mm", "tb_spacing_mm", "metaphysis_cortical_thickness_mm", "canal_diameter_mm")
        for name in positive:
            if getattr(self, name) <= 0:
                raise PhantomSpecError(f"phantom spec: {name} must be > 0, got {getattr(self, name)}")
        for name in ("blur_sigma_mm", "noise_hu", "metaphysis_length_mm", "soft_tissue_mm", "air_margin_mm"):
            if getattr(self, name) < 0:
                raise PhantomSpecError(f"phantom spec: {name} must be >= 0, got {getattr(self, name)}")
        if self.slice_mm is not None:
            if not isinstance(self.slice_mm, (int, float)) or not self.slice_mm > 0:
                raise PhantomSpecError(f"phantom spec: slice_mm must be > 0 or None, got {self.slice_mm!r}")
            object.__setattr__(self, "slice_mm", float(self.slice_mm))
        if int(self.supersample) != self.supersample or not 1 <= self.supersample <= MAX_SUPERSAMPLE:
            raise PhantomSpecError(f"phantom spec: supersample must be an integer from 1 to {MAX_SUPERSAMPLE}, got "
                                   f"{self.supersample} (each voxel is sampled supersample^3 times)")
        object.__setattr__(self, "supersample", int(self.supersample))
        object.__setattr__(self, "geometry_seed", int(self.geometry_seed))
        if int(self.vascular_canals) != self.vascular_canals or self.vascular_canals < 0:
            raise PhantomSpecError(f"phantom spec: vascular_canals must be a count >= 0, got {self.vascular_canals}")
        object.__setattr__(self, "vascular_canals", int(self.vascular_canals))
        if self.side not in ("L", "R"):
            raise PhantomSpecError(f"phantom spec: side must be 'L' or 'R', got {self.side!r}")
        if self.shape is not None:
            shape = tuple(int(n) for n in self.shape)
            if len(shape) != 3 or min(shape) < 1:
                raise PhantomSpecError(f"phantom spec: shape must be 3 positive (z, y, x) sizes, got {self.shape}")
            object.__setattr__(self, "shape", shape)
        thinnest = min(self.outer_a_mm, self.outer_b_mm) * (1 - abs(self.taper_pct) / 200)
        if max(self.cortical_thickness_mm, self.metaphysis_cortical_thickness_mm) >= thinnest:
            raise PhantomSpecError("phantom spec: the cortex is thicker than the bone's smaller semi-axis; "
                                   "make cortical_thickness_mm smaller or the bone wider")
        if not 0 < self.tb_keep_fraction <= 1:
            raise PhantomSpecError(f"phantom spec: tb_keep_fraction must be in (0, 1], got {self.tb_keep_fraction}")
        object.__setattr__(self, "lesions", tuple(_normalise_lesion(les, i) for i, les in enumerate(self.lesions)))

    @property
    def z_spacing_mm(self) -> float:
        """Slice spacing (mm): ``slice_mm``, or ``voxel_mm`` when isotropic."""
        return self.slice_mm if self.slice_mm is not None else self.voxel_mm

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Output spacing (z, y, x) in mm."""
        return (self.z_spacing_mm, self.voxel_mm, self.voxel_mm)

    # -- JSON ---------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON-ready dict (lists instead of tuples)."""
        out = asdict(self)
        out["shape"] = list(self.shape) if self.shape is not None else None
        out["lesions"] = [dict(les) for les in self.lesions]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "PhantomSpec":
        """Inverse of `to_dict`; unknown keys are refused (a typo must not pass silently)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PhantomSpecError(f"phantom spec: unknown field(s) {', '.join(unknown)}; "
                                   f"known: {', '.join(sorted(known))}")
        data = dict(data)
        if data.get("shape") is not None:
            data["shape"] = tuple(data["shape"])
        if "lesions" in data:
            data["lesions"] = tuple(dict(les) for les in data["lesions"] or ())
        return cls(**data)

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **{"indent": 2, **kwargs})

    @classmethod
    def from_json(cls, text: str) -> "PhantomSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PhantomSpecError(f"phantom spec: not valid JSON ({exc}). "
                                   "Potential fix: check the file's syntax") from exc
        if not isinstance(data, dict):
            raise PhantomSpecError("phantom spec: the JSON must be an object of spec fields")
        return cls.from_dict(data)


    @classmethod
    def from_file(cls, path) -> "PhantomSpec":
        """Read a JSON spec file; errors name the file."""
        from pathlib import Path

        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PhantomSpecError(f"{path}: cannot read the phantom spec ({exc.strerror})") from exc
        except UnicodeDecodeError as exc:
            raise PhantomSpecError(f"{path}: phantom spec is not UTF-8 text (byte {exc.start}). Potential fix: "
                                   f"give a JSON file") from exc
        try:
            return cls.from_json(text)
        except PhantomSpecError as exc:
            raise PhantomSpecError(f"{path}: {exc}") from exc
        except (TypeError, ValueError) as exc:  # a value of the wrong kind, e.g. "shape": 3 or "lesions": 5
            raise PhantomSpecError(f"{path}: phantom spec: a field has a value of the wrong type ({exc})") from exc


def _normalise_lesion(lesion, index: int) -> dict:
    if not isinstance(lesion, dict) or "kind" not in lesion:
        raise PhantomSpecError(f"phantom spec: lesion {index} must be a dict with a 'kind', got {lesion!r}")
    kind = lesion["kind"]
    if kind not in LESION_DEFAULTS:
        raise PhantomSpecError(f"phantom spec: lesion {index} has unknown kind {kind!r}; "
                               f"known: {', '.join(LESION_DEFAULTS)}")
    defaults = LESION_DEFAULTS[kind]
    unknown = sorted(set(lesion) - set(defaults) - {"kind"})
    if unknown:
        raise PhantomSpecError(f"phantom spec: lesion {index} ({kind}) has unknown parameter(s) {', '.join(unknown)}; "
                               f"known: {', '.join(defaults)}")
    out = {"kind": kind, **defaults, **{k: v for k, v in lesion.items() if k != "kind"}}
    if out["z_mm"] is None:
        raise PhantomSpecError(f"phantom spec: lesion {index} ({kind}) needs z_mm (its position along the bone)")
    for key, value in out.items():
        if key == "kind" or value is None:
            continue
        if not isinstance(value, (int, float)):
            raise PhantomSpecError(f"phantom spec: lesion {index} ({kind}) {key} must be a number, got {value!r}")
        out[key] = float(value)
    for key in ("radius_mm", "half_length_mm", "thickness_mm", "pore_mm", "extent_deg"):
        if out.get(key) is not None and out[key] <= 0:
            raise PhantomSpecError(f"phantom spec: lesion {index} ({kind}) {key} must be > 0, got {out[key]}")
    if kind == "blastic" and not 0 <= out["porosity"] < 1:
        raise PhantomSpecError(f"phantom spec: lesion {index} (blastic) porosity must be in [0, 1), "
                               f"got {out['porosity']}")
    return out


def default_spec() -> PhantomSpec:
    """A tibia-like right limb with two perforations, a lytic cavity and a blastic outgrowth."""
    return PhantomSpec(vascular_canals=6, lesions=(
        {"kind": "perforation", "z_mm": 3.2, "angle_deg": 0.0, "radius_mm": 0.1},
        {"kind": "perforation", "z_mm": 3.9, "angle_deg": 90.0, "radius_mm": 0.07},
        {"kind": "lytic_cavity", "z_mm": 1.6, "angle_deg": 200.0, "radius_mm": 0.25},
        {"kind": "blastic", "z_mm": 2.6, "angle_deg": 270.0},
    ))


def intact_twin(spec: PhantomSpec) -> PhantomSpec:
    """The same bone without lesions (same geometry seed: trabeculae identical)."""
    return replace(spec, lesions=())


def mirrored(spec: PhantomSpec) -> PhantomSpec:
    """The contralateral limb: same bone and lesions, mirrored in x (side R <-> L)."""
    return replace(spec, side="L" if spec.side == "R" else "R")
