"""ELA-CNN: a fully convolutional network over the Error Level Analysis image (JPEG quality 90),
trained by the project on synthetic splices of CASIA v1's authentic photos (see MODEL_CARD.md).
Returns a per-8x8-cell heatmap of P(tampered) besides the image score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from scanner.detectors import Result
from scanner.ela import ela_difference
from scanner.imaging import shrink
from scanner.onnx import OnnxDetector

HERE = Path(__file__).parent
ELA_QUALITY = 90
# Larger images are shrunk first: the network was trained at CASIA's scale (384x256), and
# cost grows with pixels. Resizing changes ELA, which is why training also resizes.
MAX_SIDE = 1024


# The input is the raw ELA difference on a fixed scale, not the seed's per-image brightening
# (255 / largest difference): that turned the few bright edge pixels of a clean, high-quality
# photo into full-brightness hot spots, and networks trained on it ranked CASIA's authentic
# photos above its tampered ones (validation ROC AUC 0.38 and 0.42). See MODEL_CARD.md.
FULL_SCALE = 25.0  # a raw difference of 25 or more is input 1.0


def network_input(rgb: Image.Image, difference: Image.Image | None = None) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]: the raw ELA difference of `rgb` (shrunk to MAX_SIDE) at
    quality ELA_QUALITY, / FULL_SCALE, clipped. `difference`, when already computed, is used if
    no shrinking is needed. Training calls this too, so that both see exactly the same input."""
    if max(rgb.size) > MAX_SIDE:
        rgb, difference = shrink(rgb, MAX_SIDE), None
    if difference is None:
        difference = ela_difference(rgb, ELA_QUALITY)
    return np.minimum(np.asarray(difference, dtype=np.float32) / FULL_SCALE, 1.0)


class TamperingFcn(OnnxDetector):
    """A fully convolutional tampering network with outputs `score` and `heatmap` (one cell per
    8x8 pixels); subclasses say what its input is."""

    batch_size = 1  # images differ in size; the network takes any size

    def network_input(self, sample) -> np.ndarray:
        raise NotImplementedError

    def predict(self, batch):
        results = []
        for sample in batch:
            if min(sample.size) < 32:
                results.append(Result.not_applicable("smaller than 32 pixels"))
                continue
            score, heatmap = self.model.run(self.network_input(sample)[None])
            results.append(
                Result.from_score(
                    float(score[0, 0]),
                    self.threshold,
                    heatmap=heatmap[0, :, :, 0],
                    details={"max_cell": round(float(heatmap.max()), 4)},
                )
            )
        return results


class ElaCnn(TamperingFcn):
    name = "ela-cnn"
    # 2.0.0: trained on synthetic splices whose classes share a JPEG history (1.0.0: on CASIA's
    # tampered photos, and it had learned their JPEG quality).
    version = "2.0.0"
    model_dir = HERE
    needs = frozenset({"rgb", "ela"})
    uses_settings = frozenset()  # its own ELA, at the fixed ELA_QUALITY
    threshold = 0.5  # replaced in load() by the one chosen on the training split (model.json)
    description = "Splicing / copy-move from the ELA image. Heatmap per 8x8 cell."
    # Its skill goes once an image is re-saved, and it labels two thirds of the real
    # faces_ciplab photos as fake (MODEL_CARD.md): run it only when asked for, with -d ela-cnn.
    enabled_by_default = False

    def network_input(self, sample) -> np.ndarray:
        small = max(sample.size) <= MAX_SIDE  # else the scan's ELA is of the unshrunk image
        return network_input(sample.rgb, sample.ela_difference(ELA_QUALITY) if small else None)
