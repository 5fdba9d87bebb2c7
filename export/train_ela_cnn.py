"""Train a tampering FCN on CASIA v1's training split, export it to ONNX, check parity: the
ELA-CNN (input: the ELA image), or with `--input srm` the SRM-CNN (input: RGB, through fixed
noise-residual filters).

    python -m export.train_ela_cnn               # writes plugins/ela_cnn/: model.onnx, .npz, .json
    python -m export.train_ela_cnn --input srm   # writes plugins/srm_cnn/

How: whole images (rotated to landscape, 384x256), two losses. Each 8x8 cell is labelled by
how much of it the ground-truth mask marks as tampered (binary cross-entropy, tampered cells
weighted 2), and the image by its class (cross-entropy on the `score` output). The cell loss
is there because CASIA v1's classes were saved at different JPEG qualities: an image-level
label alone can be met by recognising the quality, whereas the untouched cells of a tampered
photo share its JPEG history and are labelled clean. Images are also, at random, resized (30%,
to 75-100%, then back) and re-saved at JPEG quality 75-98 (50%) before their ELA is taken.
Tampered photos without a mask (29) are left out of training. What this achieved, and what
not, is in plugins/ela_cnn/MODEL_CARD.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from export import data, synthetic
from export.models import ela_fcn, srm_fcn
from export.onnx_export import check_parity, save_weights, to_onnx
from export.training import best_threshold, jpeg_roundtrip
from scanner.evaluate import roc_auc
from scanner.imaging import decode
from scanner_plugins import ela_cnn, srm_cnn

SEED = 20261124
CELL = 8
PLUGINS = Path(__file__).resolve().parent.parent / "plugins"
# input name -> (network builder, the plugin's input function, where the plugin lives)
KINDS = {
    "ela": (ela_fcn, ela_cnn.network_input, PLUGINS / "ela_cnn"),
    "srm": (srm_fcn, srm_cnn.network_input, PLUGINS / "srm_cnn"),
}


def augment(rgb, mask, rng, resave_all: bool = False):
    """`resave_all`: every image re-saved at q75-95, so its last JPEG quality is no cue."""
    if rng.random() < 0.3:
        scale = rng.uniform(0.75, 1.0)
        size = (round(rgb.width * scale), round(rgb.height * scale))
        rgb = rgb.resize(size, Image.Resampling.BICUBIC)
        if mask is not None:
            mask = np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))
    # Milder than it could be: re-saving most crops at qualities down to 60 erased the traces
    # the labels asked for, and the network learnt nothing (loss at chance after 7 epochs).
    if resave_all:
        rgb = jpeg_roundtrip(rgb, rng.integers(75, 96))
    elif rng.random() < 0.5:
        rgb = jpeg_roundtrip(rgb, rng.integers(75, 99))
    return rgb, mask


FULL = (384, 256)  # every CASIA v1 image is 384x256 or 256x384


def whole(item: dict, seed: int, resave_all: bool = False, kind: str = "ela"):
    """(input, cell targets, label) for the whole image, landscape, at CASIA's size."""
    rng = np.random.default_rng(seed)
    rgb, mask = augment(*data.casia_image(item), rng, resave_all)
    return sample(rgb, mask, item["label"], kind)


def sample(rgb: Image.Image, mask: np.ndarray | None, label: int, kind: str):
    m = mask if mask is not None else np.zeros((rgb.height, rgb.width), np.float32)
    if rgb.height > rgb.width:
        rgb, m = rgb.transpose(Image.Transpose.ROTATE_90), np.rot90(m).copy()
    if rgb.size != FULL:
        rgb = rgb.resize(FULL, Image.Resampling.BICUBIC)
        m = np.asarray(Image.fromarray(m).resize(FULL, Image.Resampling.NEAREST))
    x = KINDS[kind][1](rgb)
    cells = m.reshape(FULL[1] // CELL, CELL, FULL[0] // CELL, CELL).mean(axis=(1, 3))
    return x[None], cells[None], np.array([float(label)], np.float32)


def spliced(host: dict, donor: dict, seed: int, kind: str):
    """An authentic photo and a synthetic splice made from it, both saved at one final quality
    (export/synthetic.py): two samples."""
    rng = np.random.default_rng(seed)
    authentic, tampered, mask = synthetic.splice_pair(
        data.casia_image(host)[0], data.casia_image(donor)[0], rng
    )
    parts = [sample(authentic, None, 0, kind), sample(tampered, mask, 1, kind)]
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))


def epoch_data(items, epoch: int, pool, args) -> tuple[np.ndarray, ...]:
    seeds = [SEED * 1000 + epoch * 10_000 + i for i in range(len(items))]
    if args.synthetic:
        donors = np.random.default_rng(seeds[0]).permutation(len(items))
        jobs = [(h, items[d], s, args.input) for h, d, s in zip(items, donors, seeds, strict=True)]
        parts = pool.starmap(spliced, jobs, chunksize=16)
    else:
        jobs = [(i, s, args.resave_all, args.input) for i, s in zip(items, seeds, strict=True)]
        parts = pool.starmap(whole, jobs, chunksize=16)
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))


def image_scores(model: keras.Model, items: list[dict], kind: str) -> np.ndarray:
    scores = []
    for item in items:
        rgb, _ = decode(Path(item["path"]).read_bytes())
        score, _ = model(KINDS[kind][1](rgb)[None], training=False)
        scores.append(float(score[0, 0]))
    return np.array(scores)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--input", choices=sorted(KINDS), default="ela")
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="train on synthetic splices of the authentic training photos (export/synthetic.py)",
    )
    parser.add_argument("--out", type=Path, help="default: the plugin's folder")
    parser.add_argument(
        "--resave-all",
        action="store_true",
        help="re-save every training image at JPEG quality 75-95",
    )
    args = parser.parse_args(argv)
    build, network_input, default_out = KINDS[args.input]
    args.out = args.out or default_out
    keras.utils.set_random_seed(SEED)
    items = data.casia()
    train = [i for i in items if i["split"] == "train" and (i["label"] == 0 or i["mask"])]
    if args.synthetic:  # authentic photos only: each becomes an authentic and a spliced sample
        train = [i for i in train if i["label"] == 0]
    per_epoch = len(train) * (2 if args.synthetic else 1)
    print(f"training on {per_epoch} samples per epoch from {len(train)} images")

    model = build(args.width)
    steps = args.epochs * (per_epoch // args.batch + 1)
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, steps, alpha=0.05)
    optimizer = keras.optimizers.Adam(schedule)
    eps = 1e-6

    @tf.function(reduce_retracing=True)
    def step(x, cells, y):
        with tf.GradientTape() as tape:
            score, heat = model(x, training=True)
            heat = tf.clip_by_value(heat[..., 0], eps, 1 - eps)
            cell_loss = -tf.reduce_mean(
                2.0 * cells * tf.math.log(heat) + (1 - cells) * tf.math.log(1 - heat)
            )
            p = tf.clip_by_value(score[:, 0], eps, 1 - eps)
            image_loss = -tf.reduce_mean(y * tf.math.log(p) + (1 - y) * tf.math.log(1 - p))
            loss = cell_loss + image_loss
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return cell_loss, image_loss

    val = [i for i in items if i["split"] == "validation"]
    with multiprocessing.get_context("fork").Pool(max(1, os.cpu_count() or 1)) as pool:
        for epoch in range(args.epochs):
            started = time.time()
            x, cells, y = epoch_data(train, epoch, pool, args)
            order = np.random.default_rng(SEED + epoch).permutation(len(x))
            losses = []
            for start in range(0, len(order), args.batch):
                idx = order[start : start + args.batch]
                losses.append([float(v) for v in step(x[idx], cells[idx], y[idx])])
            cell_l, image_l = np.mean(losses, axis=0)
            print(
                f"epoch {epoch + 1}/{args.epochs}: cell loss {cell_l:.4f}, image loss "
                f"{image_l:.4f}, {len(x)} images, {time.time() - started:.0f} s",
                flush=True,
            )
            if (epoch + 1) % 5 == 0:  # watched, never used to pick a checkpoint
                auc = roc_auc(image_scores(model, val, args.input), [i["label"] for i in val])
                print(f"  validation ROC AUC (as-is) {auc:.3f}", flush=True)
    # Watched, not selected on: the number of epochs is fixed in advance.
    val_scores = image_scores(model, val, args.input)
    print(f"validation ROC AUC (as-is): {roc_auc(val_scores, [i['label'] for i in val]):.3f}")

    train_all = [i for i in items if i["split"] == "train"]
    train_scores = image_scores(model, train_all, args.input)
    threshold = best_threshold(train_scores, np.array([i["label"] for i in train_all]))
    args.out.mkdir(parents=True, exist_ok=True)
    save_weights(model, args.out / "weights.npz")
    onnx = to_onnx(model, args.out / "model.onnx")
    probe = [network_input(decode(Path(i["path"]).read_bytes())[0]) for i in val[:4]]
    same = [p for p in probe if p.shape == probe[0].shape]
    worst = check_parity(model, onnx, np.stack(same))
    meta = {
        "threshold": threshold,
        "input": args.input,
        "training_data": "synthetic splices" if args.synthetic else "casia1",
        "width": args.width,
        "epochs": args.epochs,
        "seed": SEED,
        "parameters": int(model.count_params()),
        "parity_max_abs_diff": worst,
    }
    (args.out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(
        f"wrote {args.out}: threshold {threshold:.3f} (chosen on the training split), "
        f"parity {worst:.1e}, {model.count_params()} parameters"
    )


if __name__ == "__main__":
    main()
