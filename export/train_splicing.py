"""Fine-tune EfficientNet-Lite0 (ImageNet weights) into the splicing detector, export it to ONNX,
check parity, choose the threshold on real photos it never saw (plugins/splicing).

    pip install -e '.[export]'
    python -m export.train_splicing          # writes plugins/splicing/: model.onnx, .npz, .json
    python -m export.train_splicing --object-pastes --out DIR   # the card's object-paste trial

Data: CASIA v1's training split (split by source photo; tampered with or without a mask, and
authentic), plus synthetic splices (export/synthetic.py) made from CASIA's authentic training
photos. Every image of BOTH classes is, at random, resized to 60-100% and then always re-saved
at JPEG quality 60-95 before it is shown at 384x256 (portrait photos turned): the file's own
quality and size are no cue, only the splice is. Two losses: the image label (on `score`) and,
where a mask exists, each 32x32 cell's tampered share (on `heatmap`). Batch norm statistics
stay frozen (batches of 16 are too small to re-estimate them), and so do the first eight
blocks.

The threshold is the lowest that flags at most 2% of the real photos of each set from other
sources: the
calibration halves (by camera model) of camera_photos and of the Kodak scans, both shrunk as the
detector shrinks them and saved at q75/q85/q95, and the face sets' real training photos.
CPU only, seeded; about 25 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from PIL import Image

from export import data, synthetic
from export.efficientnet import from_imagenet, head, trunk
from export.onnx_export import ship
from export.torch_legacy import efficientnet_lite0
from export.training import jpeg_roundtrip, threshold_per_set
from scanner.evaluate import roc_auc
from scanner.imaging import decode
from scanner_plugins import splicing

SEED = 20261125
SIZE = (384, 256)  # width, height: CASIA v1's landscape size
CELL = 32  # the trunk's stride: one heatmap cell per 32x32 pixels
FROZEN_BLOCKS = 8
LEARNING_RATE = 1e-4
OUT = Path(splicing.__file__).parent


def build() -> keras.Model:
    """Trunk and head convolution with ImageNet weights; then a 1x1 layer per cell
    (`heatmap`) and one on the pooled features (`score`)."""
    inputs = keras.Input((None, None, 3), name="input")
    features = head(trunk(inputs))
    # Layer names = output names: the ONNX graph's outputs are called after the layers.
    cells = layers.Conv2D(1, 1, activation="sigmoid", name="heatmap")(layers.Dropout(0.2)(features))
    pooled = layers.Dropout(0.3)(layers.GlobalAveragePooling2D()(features))
    score = layers.Dense(1, activation="sigmoid", name="score")(pooled)
    return keras.Model(inputs, {"score": score, "heatmap": cells}, name="splicing")


def pretrained() -> keras.Model:
    model = build()
    # The stem and the first eight blocks (down to 1/16 size) stay ImageNet's: they are most
    # of the cost of a training step, and with them trainable at 3e-4 the features collapsed
    # within one epoch (every validation score the same).
    filled = from_imagenet(model, efficientnet_lite0(), FROZEN_BLOCKS)
    print(f"EfficientNet-Lite0 ImageNet weights: {filled} layers filled", flush=True)
    return model


def resaved(rgb: Image.Image, mask: np.ndarray | None, rng: np.random.Generator):
    """Both classes alike: maybe resized to 60-100%, always re-saved at q60-95, then brought to
    SIZE (landscape). Returns (uint8 HxWx3, float32 HxW mask)."""
    if rgb.height > rgb.width:
        rgb = rgb.transpose(Image.Transpose.ROTATE_90)
        mask = None if mask is None else np.rot90(mask).copy()
    if rng.random() < 0.5:
        scale = rng.uniform(0.6, 1.0)
        rgb = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.BICUBIC)
    rgb = jpeg_roundtrip(rgb, int(rng.integers(60, 96)))
    if rgb.size != SIZE:
        rgb = rgb.resize(SIZE, Image.Resampling.BILINEAR)
    if mask is not None and mask.shape != (SIZE[1], SIZE[0]):
        mask = np.asarray(Image.fromarray(mask).resize(SIZE, Image.Resampling.BILINEAR))
    if rng.random() < 0.5:
        rgb = rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        mask = None if mask is None else mask[:, ::-1].copy()
    return np.asarray(rgb), mask


def cells(mask: np.ndarray | None) -> np.ndarray:
    """The tampered share of each CELLxCELL cell (zeros for an untouched photo)."""
    if mask is None:
        return np.zeros((SIZE[1] // CELL, SIZE[0] // CELL, 1), np.float32)
    m = np.asarray(mask, np.float32)
    return m.reshape(SIZE[1] // CELL, CELL, SIZE[0] // CELL, CELL).mean(axis=(1, 3))[..., None]


def examples(train: list[dict], hosts: list[Image.Image], epoch: int, objects=()):
    """One epoch's (images, labels, cell targets, cell weights), shuffled and seeded.
    `objects`: (tampered photo, mask) pairs whose marked regions are pasted into hosts in place
    of half the blob splices (--object-pastes)."""
    rng = np.random.default_rng(SEED + epoch)
    xs, ys, targets, weights = [], [], [], []
    for item in train:
        rgb, mask = data.casia_image(item)
        x, m = resaved(rgb, mask, rng)
        has_cells = item["label"] == 0 or mask is not None
        xs.append(x), ys.append(item["label"]), targets.append(cells(m))
        weights.append(1.0 if has_cells else 0.0)
    # Synthetic splices between CASIA's authentic training photos, one per host and epoch.
    for host in hosts:
        donor = hosts[int(rng.integers(len(hosts)))]
        if donor is host:
            continue
        pasted = None
        if objects and rng.random() < 0.5:
            source, region = objects[int(rng.integers(len(objects)))]
            pasted = synthetic.object_paste(host, source, region, rng)
        if pasted is not None:
            tampered, mask = pasted
        else:
            # The clean half of the pair is not used: the host is already among CASIA's photos.
            _, tampered, mask = synthetic.splice_pair(host, donor.resize(host.size), rng)
        x, m = resaved(tampered, mask * 255, rng)
        xs.append(x), ys.append(1), targets.append(cells(m / 255)), weights.append(1.0)
    order = rng.permutation(len(xs))
    return (
        np.stack(xs)[order].astype(np.float32),
        np.array(ys, np.float32)[order, None],
        np.stack(targets)[order],
        # Per cell, as the heatmap loss is per cell: zero for a tampered photo with no mask.
        np.broadcast_to(
            np.array(weights, np.float32)[order, None, None], (len(xs), *targets[0].shape[:2])
        ).copy(),
    )


def scores_of(model, images: list[Image.Image]) -> np.ndarray:
    """The model's score for each image, as the detector computes it; images of one shape are
    run as one batch."""
    from scanner_plugins.splicing import network_input

    inputs = [network_input(rgb) for rgb in images]
    out = np.zeros(len(inputs))
    for shape in {x.shape for x in inputs}:
        index = [i for i, x in enumerate(inputs) if x.shape == shape]
        batch = np.stack([inputs[i] for i in index])
        out[index] = model.predict(batch, batch_size=32, verbose=0)["score"][:, 0]
    return out


def casia_scores(model, items, quality: int | None) -> np.ndarray:
    images = [decode(Path(i["path"]).read_bytes())[0] for i in items]
    if quality:
        images = [jpeg_roundtrip(rgb, quality) for rgb in images]
    return scores_of(model, images)


def calibration_reals() -> list[tuple[Image.Image, str]]:
    """The real photos the threshold is chosen on, as the detector will see them."""
    from scanner_plugins.splicing import shrunk

    out = []
    for item in data.real_photos():
        if item["split"] != "calibration":
            continue
        rgb = shrunk(decode(Path(item["path"]).read_bytes())[0])
        out += [(jpeg_roundtrip(rgb, q), item["set"]) for q in (75, 85, 95)]
    for item in data.faces():
        if item["label"] == 0 and item["split"] == "train":
            out.append((decode(Path(item["path"]).read_bytes())[0], item["set"]))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--object-pastes",
        action="store_true",
        help="half the synthetic splices paste a training photo's tampered region (its mask)",
    )
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()

    items = data.casia()
    train = [i for i in items if i["split"] == "train"]
    val = [i for i in items if i["split"] == "validation"]
    hosts = [decode(Path(i["path"]).read_bytes())[0] for i in train if i["label"] == 0]
    objects = []
    if args.object_pastes:
        objects = [data.casia_image(i) for i in train if i["label"] == 1 and i["mask"]]
    model = pretrained()
    steps = args.epochs * ((len(train) + len(hosts)) // 16 + 1)
    schedule = keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss={"score": "binary_crossentropy", "heatmap": "binary_crossentropy"},
        loss_weights={"score": 1.0, "heatmap": 1.0},
    )
    for epoch in range(args.epochs):
        start = time.time()
        x, y, t, w = examples(train, hosts, epoch, objects)
        history = model.fit(
            x,
            {"score": y, "heatmap": t},
            sample_weight={"score": np.ones(len(w), np.float32), "heatmap": w},
            batch_size=16,
            epochs=1,
            verbose=0,
        )
        loss = {k: round(v[-1], 4) for k, v in history.history.items()}
        val_scores = casia_scores(model, val, 85)
        auc = roc_auc(val_scores, [i["label"] for i in val])
        print(
            f"epoch {epoch + 1}: {loss}, validation AUC at q85 {auc:.3f} "
            f"(scores {val_scores.min():.3f}-{val_scores.max():.3f}), "
            f"{time.time() - start:.0f} s",
            flush=True,
        )

    reals = calibration_reals()
    scores = scores_of(model, [rgb for rgb, _ in reals])
    threshold, flagged = threshold_per_set(scores, [n for _, n in reals])
    print(f"threshold {threshold:.4f}; calibration reals flagged: {flagged}", flush=True)

    from scanner_plugins.splicing import network_input

    probe = np.stack(
        [
            network_input(img)
            for img in (decode(Path(i["path"]).read_bytes())[0] for i in val)
            if img.size == SIZE
        ][:4]
    )
    sets = [n for _, n in reals]
    worst = ship(
        model, args.out, probe, threshold, sets, flagged, 0.02, epochs=args.epochs, seed=SEED
    )
    print(f"wrote {args.out}; Keras/ONNX max difference {worst:.1e}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
