"""Cortical porosity (Ct.Po): the cortex's own pores, not the pits of its surface nor its lesions.

Ct.Po = Po.V / Ct.TV (Burghardt et al. 2010: pores are the non-bone voxels of the cortical
compartment). Three things that are not intracortical pores are kept out:

* pits of the periosteal surface (noise, partial volume), which the envelope's closing fills: pore
  components that stay within ``surface_mm`` of the outside of the envelope. A canal's mouth is
  part of its canal's component and counts;
* bone destroyed by lesions (lytic regions, cortical defects): measured as lytic_volume_mm3, so it
  is not counted twice; it stays in the compartment (it was cortex before the lesion);
* the region of blastic outgrowths beyond the modelled periosteal surface: the spaces of woven bone
  are not cortex; it leaves the compartment.
"""

from __future__ import annotations

import numpy as np

from ..segment.envelope import near_outside
from ..segment.labels import lookup
from ..volume import bounding_box


def cortical_pores(cortex: np.ndarray, bone: np.ndarray, envelope: np.ndarray, *, spacing_mm,
                   surface_mm: float | None = None) -> np.ndarray:
    """Pore voxels of the cortical compartment: non-bone, in components reaching deeper than the surface.

    Parameters
    ----------
    cortex, bone, envelope : (Z, Y, X) bool ndarray
        The cortical compartment, the bone and the periosteal envelope.
    spacing_mm : (3,) float, keyword-only
    surface_mm : float, keyword-only
        Depth of the periosteal surface layer whose pits are not pores; default 1.5 voxels
        (the pits the noise leaves are 1-3 voxels, all within it on the phantoms).

    Returns
    -------
    (Z, Y, X) bool ndarray
    """
    import cc3d

    out = np.zeros(cortex.shape, bool)
    box = bounding_box(cortex, margin_vox=1)
    if box is None:
        return out
    surface_mm = 1.5 * float(min(spacing_mm)) if surface_mm is None else surface_mm
    candidate = cortex[box] & ~bone[box]
    if not candidate.any():
        return out
    # the candidate voxels below the surface layer, made in place before the labels (Ct.Po holds the
    # morphometry stage's memory peak)
    below = near_outside(envelope[box], spacing_mm=spacing_mm, distance_mm=surface_mm)
    np.logical_not(below, out=below)
    below &= candidate
    labels, n = cc3d.connected_components(candidate.view(np.uint8), connectivity=26, return_N=True)
    del candidate
    deep = np.zeros(n + 1, bool)
    deep[labels[below]] = True  # a fancy assignment: np.unique sorted the hits
    del below
    deep[0] = False
    out[box] = lookup(deep, labels)
    return out


def cortical_porosity_pct(cortex: np.ndarray, bone: np.ndarray, envelope: np.ndarray, *, spacing_mm,
                          lesion: np.ndarray | None = None, outgrowth: np.ndarray | None = None,
                          surface_mm: float | None = None) -> float:
    """Ct.Po in %: pores / cortical compartment x 100 (NaN for an empty compartment).

    Parameters
    ----------
    cortex, bone, envelope : (Z, Y, X) bool ndarray
    spacing_mm : (3,) float, keyword-only
    lesion : bool ndarray, optional
        Lytic regions and cortical defects: not pores, still compartment.
    outgrowth : bool ndarray, optional
        The region of blastic outgrowths beyond the modelled periosteal surface: not compartment.
    surface_mm : float, optional
        As in `cortical_pores`.

    Examples
    --------
    >>> import numpy as np
    >>> env = np.zeros((9, 12, 12), bool); env[:, 1:11, 1:11] = True
    >>> bone = env.copy(); bone[3:6, 5:7, 5:7] = False          # a pore deep in a solid block
    >>> round(cortical_porosity_pct(env, bone, env, spacing_mm=(1, 1, 1)), 3)
    1.333
    """
    if outgrowth is not None:  # cortex & ~outgrowth, in one array
        kept = np.logical_not(outgrowth)
        kept &= cortex
        cortex = kept
    n_cortex = np.count_nonzero(cortex)
    if n_cortex == 0:
        return float("nan")
    pores = cortical_pores(cortex, bone, envelope, spacing_mm=spacing_mm, surface_mm=surface_mm)
    if lesion is not None:
        pores[lesion] = False  # in place: Ct.Po holds the morphometry stage's memory peak
    return float(100.0 * np.count_nonzero(pores) / n_cortex)
