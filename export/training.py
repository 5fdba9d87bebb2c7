"""Helpers every training script shares."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def jpeg_roundtrip(rgb: Image.Image, quality: int) -> Image.Image:
    """`rgb` saved as JPEG at `quality` and decoded again: what a re-save on the web does."""
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG", quality=int(quality))
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def best_threshold(scores, labels) -> float:
    """The threshold with the highest balanced accuracy; call it on training data only."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    candidates = np.unique(np.round(scores, 3))

    def balanced(t):
        pred = scores >= t
        return (pred[labels == 1].mean() + (~pred[labels == 0]).mean()) / 2

    return float(max(candidates, key=balanced))
