"""The components of a mask with at least a given number of voxels (or the largest), labelled slab by slab.

A label volume of the mask's box (2-4 bytes a voxel) beside a copy of the box was the lesion stage's memory
peak at 512^3: the woven-bone candidates are specks of soft tissue all over the crop, so their box is the
crop. Here the box is labelled (cc3d) in slabs of slices: each slab's component sizes and its first and last
planes of labels are kept, components meeting across a slab face are joined (union-find over the two planes,
with the connectivity's in-plane offsets), and each slab is labelled again to write the components whose
joined size is large enough. The same voxels as labelling the box whole (cc3d is deterministic); two
labellings of each slab, and a slab's labels held at a time instead of the box's.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..volume import bounding_box
from .labels import label_counts, lookup

# boxes up to this many voxels are labelled whole; larger ones in slabs of about this size
SLAB_VOXELS = 1 << 24


def large_components(mask: np.ndarray, *, min_voxels: float, connectivity: int = 26,
                     slab_voxels: int = SLAB_VOXELS) -> np.ndarray:
    """Boolean mask of the ``connectivity``-connected components of ``mask`` with at least ``min_voxels`` voxels."""
    need = int(np.ceil(min_voxels))
    return _components_in_slabs(mask, connectivity, slab_voxels, lambda size, roots, backgrounds: size[roots] >= need)


def largest_component(mask: np.ndarray, *, connectivity: int = 26, slab_voxels: int = SLAB_VOXELS) -> np.ndarray:
    """Boolean mask of the largest ``connectivity``-connected component of ``mask`` (all False when empty); of
    equals, the one whose first voxel comes first in raster order, as cc3d's labels and ``argmax`` choose.

    A joined component's root is its smallest id, and ids follow the slabs and, within a slab, cc3d's order of
    first voxels: so the roots are ordered as the whole box's labels would be."""
    def largest(size, roots, backgrounds):
        at_root = np.where(roots == np.arange(roots.size), size, -1.0)
        at_root[backgrounds] = -1.0
        if at_root.max() <= 0:
            return np.zeros(roots.size, bool)
        return roots == int(np.argmax(at_root))

    return _components_in_slabs(mask, connectivity, slab_voxels, largest)


def _components_in_slabs(mask, connectivity: int, slab_voxels: int, choose) -> np.ndarray:
    """The components of ``mask`` that ``choose(size, roots, backgrounds)`` keeps: ``size`` the joined voxel
    count at each label's root (labels numbered across the slabs), ``roots`` each label's root, ``backgrounds``
    the slabs' background labels; it returns a bool per label. See the module docs."""
    if connectivity not in (6, 18, 26):
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity}")
    out = np.zeros(mask.shape, bool)
    box = bounding_box(mask)
    if box is None:
        return out
    nz = box[0].stop - box[0].start
    plane = (box[1].stop - box[1].start) * (box[2].stop - box[2].start)
    n_slabs = min(nz, max(1, -(-nz * plane // slab_voxels)))
    bounds = np.linspace(box[0].start, box[0].stop, n_slabs + 1).astype(np.int64)

    def labelled(s):
        import cc3d

        part = np.ascontiguousarray(mask[bounds[s]:bounds[s + 1], box[1], box[2]], dtype=bool).view(np.uint8)
        return cc3d.connected_components(part, connectivity=connectivity, return_N=True)

    if n_slabs == 1:  # labelled once: its labels are the box's
        labels, n = labelled(0)
        size = label_counts(labels, int(n)).astype(np.float64)
        keep = choose(size, np.arange(size.size), np.zeros(1, np.int64))
        keep[0] = False
        out[box] = lookup(keep, labels)
        return out

    counts, firsts, lasts = [], [], []
    for s in range(n_slabs):
        labels, n = labelled(s)
        counts.append(label_counts(labels, int(n)))
        firsts.append(labels[0].astype(np.int64))
        lasts.append(labels[-1].astype(np.int64))
        del labels
    offsets = np.cumsum([0] + [c.size for c in counts]).astype(np.int64)
    parent = np.arange(offsets[-1], dtype=np.int64)
    for s in range(n_slabs - 1):
        _join_faces(lasts[s] + offsets[s], firsts[s + 1] + offsets[s + 1], lasts[s] > 0, firsts[s + 1] > 0,
                    connectivity, parent)
    roots = _roots(parent)
    size = np.bincount(roots, weights=np.concatenate(counts), minlength=roots.size)
    chosen = choose(size, roots, offsets[:-1])
    for s in range(n_slabs):
        keep = chosen[offsets[s]:offsets[s + 1]].copy()
        keep[0] = False  # each slab's background
        labels, _ = labelled(s)
        out[bounds[s]:bounds[s + 1], box[1], box[2]] = lookup(keep, labels)
        del labels
    return out


@njit(cache=True)
def _find(parent, i):  # pragma: no cover - compiled
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True)
def _join_faces(below, above, in_below, in_above, connectivity, parent):  # pragma: no cover - compiled
    """Join the components of two facing planes (global ids) whose voxels touch across the face: the voxel
    straight across (6), and its 4 (18) or 8 (26) in-plane neighbours."""
    ny, nx = below.shape
    reach = 0 if connectivity == 6 else 1
    for y in range(ny):
        for x in range(nx):
            if not in_below[y, x]:
                continue
            for dy in range(-reach, reach + 1):
                for dx in range(-reach, reach + 1):
                    if connectivity == 18 and dy != 0 and dx != 0:
                        continue
                    v, u = y + dy, x + dx
                    if v < 0 or v >= ny or u < 0 or u >= nx or not in_above[v, u]:
                        continue
                    a, b = _find(parent, below[y, x]), _find(parent, above[v, u])
                    if a != b:
                        parent[max(a, b)] = min(a, b)


@njit(cache=True)
def _roots(parent):  # pragma: no cover - compiled
    out = np.empty(parent.size, np.int64)
    for i in range(parent.size):
        out[i] = _find(parent, i)
    return out
