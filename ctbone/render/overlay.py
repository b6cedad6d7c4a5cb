"""2D annotations drawn on a rendered picture: scale bar, legend, label (Pillow)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

NICE_LENGTHS_MM = (0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 20.0, 25.0, 50.0)


def nice_bar_mm(visible_width_mm: float, fraction: float = 0.2) -> float:
    """The largest 'round' length no longer than ``fraction`` of the visible width."""
    target = visible_width_mm * fraction
    fitting = [v for v in NICE_LENGTHS_MM if v <= target]
    return fitting[-1] if fitting else NICE_LENGTHS_MM[0]


def _font(size_px: int):
    try:
        return ImageFont.load_default(size=size_px)
    except (TypeError, OSError):  # Pillow built without FreeType: fixed bitmap font
        return ImageFont.load_default()


def _ink(background) -> tuple[int, int, int]:
    """Black on light backgrounds, white on dark ones."""
    return (0, 0, 0) if float(np.mean(background)) > 0.5 else (255, 255, 255)


def _mm_text(length_mm: float) -> str:
    # "0.5 mm", never "500 µm": the default font may lack the µ glyph
    return f"{length_mm:g} mm"


def annotate(rgb: np.ndarray, *, px_per_mm: float | None, background, label: str | None,
             legend: list[tuple[str, tuple]] | None, captions: list[tuple[tuple[int, int], str]] = ()) -> np.ndarray:
    """Return ``rgb`` (h, w, 3 uint8) with a scale bar (bottom left), legend (top right) and label (top left).

    ``captions`` are extra (xy pixel, text) pairs, e.g. view names in a panel.
    """
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    h, w = rgb.shape[:2]
    unit = max(12, h // 45)  # text height scales with the picture
    font, small = _font(unit), _font(int(unit * 0.8))
    ink = _ink(background)
    pad = unit

    if label:
        draw.text((pad, pad), label, fill=ink, font=font)
    for xy, text in captions:
        draw.text(xy, text, fill=ink, font=small)
    if px_per_mm:
        length_mm = nice_bar_mm(w / px_per_mm)
        bar = int(round(length_mm * px_per_mm))
        y = h - 2 * pad
        draw.rectangle([pad, y, pad + bar, y + max(3, unit // 4)], fill=ink)
        draw.text((pad, y - int(unit * 1.3)), _mm_text(length_mm), fill=ink, font=font)
    if legend:
        box = int(unit * 0.9)
        widths = [draw.textlength(name, font=small) for name, _ in legend]
        x0 = int(w - pad - box - unit // 2 - max(widths))
        for i, (name, colour) in enumerate(legend):
            y = pad + i * int(unit * 1.4)
            fill = tuple(int(round(c * 255)) for c in colour)
            draw.rectangle([x0, y, x0 + box, y + box], fill=fill, outline=ink)
            draw.text((x0 + box + unit // 2, y), name, fill=ink, font=small)
    return np.asarray(image)
