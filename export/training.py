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


def threshold_for(scores, max_fpr: float = 0.02) -> float:
    """The lowest threshold (score >= threshold is fake) that flags at most `max_fpr` of the
    real `scores`: just above the highest real score it must clear."""
    ordered = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    allowed = int(np.floor(max_fpr * len(ordered)))
    return float(np.nextafter(ordered[allowed], 1.0))


def threshold_per_set(scores, sets, max_fpr: float = 0.02) -> tuple[float, dict[str, float]]:
    """The lowest threshold that flags at most `max_fpr` of the real photos of EVERY set (a
    pooled rate would let a large set of easy photos hide a small set of hard ones), and the
    share of each set it flags."""
    scores, sets = np.asarray(scores, dtype=np.float64), np.asarray(sets)
    names = sorted(set(sets.tolist()))
    threshold = max(threshold_for(scores[sets == name], max_fpr) for name in names)
    return threshold, {name: float((scores[sets == name] >= threshold).mean()) for name in names}
