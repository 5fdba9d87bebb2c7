"""SRM-CNN: a tampering detector that looks at the image's noise rather than its content. A
fixed layer of spatial-rich-model high-pass filters comes first, then the same small fully
convolutional network as the ELA-CNN, trained by the project on CASIA v1. On our data it has
no skill (see MODEL_CARD.md).
Returns a per-8x8-cell heatmap of P(tampered) besides the image score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from scanner.imaging import shrink
from scanner_plugins.ela_cnn import MAX_SIDE, TamperingFcn

HERE = Path(__file__).parent


def network_input(rgb: Image.Image) -> np.ndarray:
    """(H, W, 3) float32 RGB in 0..255, shrunk like the ELA-CNN's input. The high-pass filters
    are part of the ONNX graph. Training calls this too."""
    return np.asarray(shrink(rgb, MAX_SIDE), dtype=np.float32)


class SrmCnn(TamperingFcn):
    name = "srm-cnn"
    version = "1.0.0"
    model_dir = HERE
    needs = frozenset({"rgb"})
    threshold = 0.5  # replaced in load() by the one chosen on the training split
    description = "Splicing / copy-move from SRM noise residuals. Heatmap per 8x8 cell."
    # No skill on CASIA's validation split (ROC AUC 0.54; MODEL_CARD.md): shipped so that the
    # method can be run and retrained, but only when asked for, with -d srm-cnn.
    enabled_by_default = False

    def network_input(self, sample) -> np.ndarray:
        return network_input(sample.rgb)
