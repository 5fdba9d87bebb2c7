"""The seed's ELA-CNN recipe on the same CASIA v1 split, for the ELA-CNN model card's comparison.

    python -m export.seed_baseline

ELA at quality 90, brightness scaled by 255 / max difference, resized to 128x128, / 255; the
seed's network (export.models.seed_ela_cnn, 29.5M parameters), Adam, 2-class softmax, no
augmentation, as the seed trained it. Not shipped: it only prints validation ROC AUC as-is and
with both classes re-saved at one JPEG quality.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from export import data
from export.models import seed_ela_cnn
from export.training import jpeg_roundtrip
from scanner.ela import error_level
from scanner.evaluate import roc_auc
from scanner.imaging import decode

SEED = 20261124


def seed_input(rgb: Image.Image) -> np.ndarray:
    ela, _ = error_level(rgb, 90)
    return np.asarray(ela.resize((128, 128)), dtype=np.float32) / 255.0


def inputs(items, quality: int | None = None) -> np.ndarray:
    out = []
    for item in items:
        rgb, _ = decode(Path(item["path"]).read_bytes())
        out.append(seed_input(jpeg_roundtrip(rgb, quality) if quality else rgb))
    return np.stack(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(SEED)
    items = data.casia()
    train = [i for i in items if i["split"] == "train"]
    val = [i for i in items if i["split"] == "validation"]
    model = seed_ela_cnn()
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
    model.fit(
        inputs(train),
        np.array([i["label"] for i in train]),
        batch_size=32,
        epochs=args.epochs,
        shuffle=True,
        verbose=2,
    )
    labels = [i["label"] for i in val]
    for quality in (None, 75, 85, 95):
        scores = model.predict(inputs(val, quality), verbose=0)[:, 1]
        name = "as-is" if quality is None else f"both re-saved at q{quality}"
        print(f"seed ELA-CNN, validation ROC AUC {name}: {roc_auc(scores, labels):.3f}")


if __name__ == "__main__":
    main()
