"""ELA-PatchNet: the seed's cross-entropy network (3x3 convolution with 8 filters, 2x2
max-pooling, softmax), written and trained from scratch in NumPy by export/numpy_net.py, run on
32x32 patches of the ELA image. The image score aggregates the patch scores as model.json says;
the patch scores are the heatmap. See MODEL_CARD.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from scanner.detectors import Result
from scanner.onnx import OnnxDetector
from scanner_plugins.ela_cnn import ELA_QUALITY, MAX_SIDE, network_input

HERE = Path(__file__).parent
PATCH = 32


def patch_input(rgb: Image.Image, difference: Image.Image | None = None) -> np.ndarray:
    """(H, W) float32: the ELA-CNN's input (raw ELA difference at q90 on a fixed scale),
    averaged over the colour channels, as the seed's network took one channel."""
    return network_input(rgb, difference).mean(axis=-1)


def tiles(grey: np.ndarray) -> np.ndarray:
    """(rows, cols, 32, 32): the non-overlapping patches; a remainder under 32 px is dropped."""
    rows, cols = grey.shape[0] // PATCH, grey.shape[1] // PATCH
    cut = grey[: rows * PATCH, : cols * PATCH]
    return cut.reshape(rows, PATCH, cols, PATCH).transpose(0, 2, 1, 3)


def aggregate(patch_scores: np.ndarray, how: str) -> float:
    """The image's score from its patches' P(tampered): `max`, `mean`, or `topN` (mean of the N
    highest), chosen on the training split by export/train_patchnet.py."""
    flat = np.sort(patch_scores.ravel())[::-1]
    if how == "max":
        return float(flat[0])
    if how == "mean":
        return float(flat.mean())
    return float(flat[: int(how.removeprefix("top"))].mean())


class ElaPatchNet(OnnxDetector):
    name = "ela-patchnet"
    version = "1.0.0"
    model_dir = HERE
    needs = frozenset({"rgb", "ela"})
    uses_settings = frozenset()  # its own ELA, at the fixed ELA_QUALITY
    threshold = 0.5  # replaced in load() by the one chosen on the training split
    description = "The seed's cross-entropy net (NumPy-built) on 32x32 ELA patches; heatmap."
    batch_size = 1
    # As fragile as the ela-cnn once re-saved, and it flags every real faces_ciplab photo
    # (MODEL_CARD.md): run it only when asked for, with -d ela-patchnet.
    enabled_by_default = False

    def score(self, grey: np.ndarray) -> np.ndarray:
        """P(tampered) per patch, (rows, cols)."""
        grid = tiles(grey)
        rows, cols = grid.shape[:2]
        batch = grid.reshape(rows * cols, 1, PATCH, PATCH).astype(np.float32)
        return self.model.run(batch)[0][:, 1].reshape(rows, cols)

    def predict(self, batch):
        results = []
        for sample in batch:
            if min(sample.size) < PATCH:
                results.append(Result.not_applicable(f"smaller than {PATCH} pixels"))
                continue
            small = max(sample.size) <= MAX_SIDE
            shared = sample.ela_difference(ELA_QUALITY) if small else None
            heatmap = self.score(patch_input(sample.rgb, shared))
            results.append(
                Result.from_score(
                    aggregate(heatmap, self.meta["aggregation"]),
                    self.threshold,
                    heatmap=heatmap,
                    details={"patches": int(heatmap.size), "aggregation": self.meta["aggregation"]},
                )
            )
        return results
