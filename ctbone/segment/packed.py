"""A mask held as bits between stages: an eighth of its uint8 memory, unpacked where it is read.

The segmentation hands the lesion and morphometry stages the envelope and marrow masks (73 MB each as uint8 on a
512^3 bone's crop), which each stage reads once or twice; held as bits they cost 9 MB each through the stages,
and unpacking one takes ~10 ms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class PackedMask:
    """A boolean (Z, Y, X) mask as ``np.packbits`` along x (each row padded to whole bytes with zeros)."""

    bits: np.ndarray
    shape: tuple[int, int, int]

    @classmethod
    def of(cls, mask: np.ndarray) -> PackedMask:
        mask = np.asarray(mask)
        return cls(np.packbits(mask.astype(bool, copy=False), axis=-1), tuple(int(n) for n in mask.shape))

    def unpacked(self) -> np.ndarray:
        """The mask, a new bool array."""
        return np.unpackbits(self.bits, axis=-1, count=self.shape[-1]).view(bool)

    def and_not(self, other: PackedMask) -> PackedMask:
        """``self & ~other``, bit by bit (the padding stays zero)."""
        if other.shape != self.shape:
            raise ValueError(f"masks of shapes {self.shape} and {other.shape}")
        return PackedMask(self.bits & ~other.bits, self.shape)
