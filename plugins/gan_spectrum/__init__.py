"""GAN spectrum: the frequency-spectrum detector of Durall et al. (2020). A 256x256 grey crop
goes through one ONNX graph (2-D DFT, log magnitude, azimuthal average into 128 rings, min-max
normalisation, a small dense network), built by export/spectrum.py. See MODEL_CARD.md: on our
data it works on StyleGAN2 faces and not on the JPEG-compressed CNNDetection families."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from scanner.detectors import Result
from scanner.onnx import OnnxDetector

HERE = Path(__file__).parent
SIDE = 256


def crop(rgb: Image.Image) -> np.ndarray | None:
    """(256, 256) float32 grey (ITU-R 601 luma) from the centre, never resampled: resizing
    would add its own spectral traces. None when the image is smaller than that."""
    if min(rgb.size) < SIDE:
        return None
    left, top = (rgb.width - SIDE) // 2, (rgb.height - SIDE) // 2
    grey = rgb.crop((left, top, left + SIDE, top + SIDE)).convert("L")
    return np.asarray(grey, dtype=np.float32)


class GanSpectrum(OnnxDetector):
    name = "gan-spectrum"
    version = "1.1.0"  # 1.1.0: a dense network after the profile (1.0.0: logistic regression)
    model_dir = HERE
    needs = frozenset({"rgb"})
    threshold = 0.5  # replaced in load() by the one chosen on the training split
    description = "Durall et al. spectrum + small dense net on a 256x256 centre crop."
    batch_size = 32
    # No consistent skill on the CNNDetection generators, and it flags 58% of real CASIA photos
    # (MODEL_CARD.md): ask for it by name.
    enabled_by_default = False

    def predict(self, batch):
        crops = [crop(sample.rgb) for sample in batch]
        why = [
            f"smaller than {SIDE}x{SIDE} pixels"
            if c is None
            # The spectrum of a flat crop is rounding noise, and min-max scaling magnifies it.
            else "the centre crop is flat (no texture to analyse)"
            if c.std() < 1.0
            else None
            for c in crops
        ]
        usable = [c for c, w in zip(crops, why, strict=True) if w is None]
        scores = iter(self.model.run(np.stack(usable))[0][:, 0] if usable else [])
        return [
            Result.from_score(float(next(scores)), self.threshold)
            if w is None
            else Result.not_applicable(w)
            for w in why
        ]
