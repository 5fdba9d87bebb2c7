"""Train Meso-4 and MesoInception-4 from scratch on the face sets, export ONNX, check parity.

    python -m export.train_meso            # writes plugins/mesonet/{meso4,mesoinception4}.*

Data: faces_ciplab (Photoshop composites) and faces_stylegan2 (generated faces), real and fake,
split 80/20 by file (export.data.faces). The images are face crops already, so each is resized
whole to 256x256 (nearest, as the authors fed theirs) and divided by 255. Unlike the authors'
model, the sigmoid is P(fake) and the loss is binary cross-entropy. Augmentation: horizontal
flips, and re-compression at JPEG quality 70-98, because faces_ciplab's fakes were partly saved
at other qualities than its reals.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np

from export import data, models
from export.onnx_export import check_parity, save_weights, to_onnx
from export.training import best_threshold, jpeg_roundtrip
from scanner.evaluate import roc_auc
from scanner.faces import crop_face
from scanner.imaging import decode

SEED = 20261124
OUT = Path(__file__).resolve().parent.parent / "plugins" / "mesonet"
NETWORKS = {"meso4": models.meso4, "mesoinception4": models.meso_inception4}


def face_input(path: str, quality: int | None = None) -> np.ndarray:
    """What the detector feeds the network: the whole face crop, 256x256, / 255."""
    rgb, _ = decode(Path(path).read_bytes())
    if quality:
        rgb = jpeg_roundtrip(rgb, quality)
    return np.asarray(crop_face(rgb), dtype=np.float32) / 255.0


def epoch_batch(items, rng) -> tuple[np.ndarray, np.ndarray]:
    xs = []
    for item in items:
        quality = int(rng.integers(70, 99)) if rng.random() < 0.7 else None
        x = face_input(item["path"], quality)
        xs.append(x[:, ::-1] if rng.random() < 0.5 else x)
    return np.stack(xs), np.array([i["label"] for i in items], np.float32)


def train(name: str, items: list[dict], epochs: int, out: Path) -> dict:
    keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    train_items = [i for i in items if i["split"] == "train"]
    val = [i for i in items if i["split"] == "validation"]
    model = NETWORKS[name]()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    x_val = np.stack([face_input(i["path"]) for i in val])
    y_val = np.array([i["label"] for i in val])
    for epoch in range(epochs):
        started = time.time()
        x, y = epoch_batch(train_items, rng)
        history = model.fit(x, y, batch_size=32, epochs=1, shuffle=True, verbose=0)
        auc = roc_auc(model.predict(x_val, verbose=0)[:, 0], y_val)  # watched, not selected on
        print(
            f"{name} epoch {epoch + 1}/{epochs}: loss {history.history['loss'][0]:.4f}, "
            f"validation AUC {auc:.3f}, {time.time() - started:.0f} s",
            flush=True,
        )
    x_train = np.stack([face_input(i["path"]) for i in train_items])
    threshold = best_threshold(
        model.predict(x_train, verbose=0)[:, 0], [i["label"] for i in train_items]
    )
    save_weights(model, out / f"{name}.weights.npz")
    onnx = to_onnx(model, out / f"{name}.onnx")
    worst = check_parity(model, onnx, x_val[:8])
    meta = {
        "threshold": threshold,
        "epochs": epochs,
        "seed": SEED,
        "parameters": int(model.count_params()),
        "parity_max_abs_diff": worst,
    }
    (out / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {out / name}.onnx: threshold {threshold:.3f}, parity {worst:.1e}")
    return meta


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--only", choices=sorted(NETWORKS))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    items = data.faces()
    for name in [args.only] if args.only else sorted(NETWORKS):
        train(name, items, args.epochs, args.out)


if __name__ == "__main__":
    main()
