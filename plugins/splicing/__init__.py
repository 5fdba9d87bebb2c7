"""Splicing: EfficientNet-Lite0 (ImageNet weights) fine-tuned by the project on CASIA v1's
training split and synthetic splices, every image of both classes re-saved at a random JPEG
quality first (export/train_splicing.py), so that what it scores is the pasted content, not the
file's compression. It looks at the picture shrunk to 384 pixels, which keeps its cost flat.
Returns P(spliced) and a heatmap (one cell per 32x32 pixels of the shrunk copy, brought to the
image's resolution)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from scanner.detectors import Result
from scanner.imaging import shrink
from scanner.onnx import OnnxDetector

HERE = Path(__file__).parent
MAX_SIDE = 384  # CASIA v1's size, at which the network was trained
CELL = 32


def shrunk(rgb: Image.Image) -> Image.Image:
    return shrink(rgb, MAX_SIDE)


def network_input(rgb: Image.Image) -> np.ndarray:
    """(H, W, 3) float32 RGB in 0..255 of the shrunk image; scaling is inside the network.
    Training calls this too."""
    return np.asarray(shrunk(rgb), dtype=np.float32)


def full_size(cells: np.ndarray, shrunk_size: tuple[int, int], size: tuple[int, int]):
    """The cell grid as a per-pixel map of the original image: each cell covers CELL pixels of
    the shrunk copy (the last row and column may hang over its edge)."""
    pixels = np.kron(cells, np.ones((CELL, CELL), np.float32))
    pixels = pixels[: shrunk_size[1], : shrunk_size[0]]
    return cv2.resize(pixels, size, interpolation=cv2.INTER_LINEAR)


class Splicing(OnnxDetector):
    name = "splicing"
    version = "1.0.0"
    model_dir = HERE
    needs = frozenset({"rgb"})
    uses_settings = frozenset()
    threshold = 0.5  # replaced in load() by model.json's, chosen on held-out real photos
    description = "Spliced-in content, from an ImageNet-pretrained CNN on the picture. Heatmap."
    batch_size = 1  # images differ in shape
    # ROC AUC about 0.66 on CASIA's validation split re-saved at q85, where issue 11's bar is
    # 0.80 (MODEL_CARD.md): run it when asked for, with -d splicing.
    enabled_by_default = False

    def predict(self, batch):
        results = []
        for sample in batch:
            if min(sample.size) < CELL:
                results.append(Result.not_applicable(f"smaller than {CELL} pixels"))
                continue
            x = network_input(sample.rgb)
            outputs = dict(
                zip(
                    [o.name for o in self.model.session.get_outputs()],
                    self.model.run(x[None]),
                    strict=True,
                )
            )
            score = float(outputs["score"][0, 0])
            cells = outputs["heatmap"][0, :, :, 0]
            heatmap = full_size(cells, (x.shape[1], x.shape[0]), sample.size)
            results.append(
                Result.from_score(
                    score,
                    self.threshold,
                    heatmap=heatmap,
                    details={"max_cell": round(float(cells.max()), 4)},
                )
            )
        return results
