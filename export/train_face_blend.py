"""Fine-tune EfficientNet-Lite0 (ImageNet weights) into the face-blend detector, export it to
ONNX, check parity, choose the threshold on real faces it never saw (plugins/face_blend).

    pip install -e '.[export]'
    python -m export.train_face_blend        # writes plugins/face_blend/: model.onnx, .npz, .json

One network, two heads on the pooled features of a face crop:
- `blend`: real faces, each shown as it is (0) and self-blended (1, export/self_blend.py: the
  boundary every face swap and face composite leaves), and since version 1.2.0 the training
  split's faces_ciplab Photoshop composites (1, twice each per epoch; `--no-composites`
  leaves them out, the 1.1.0 recipe);
- `generated`: real faces (0) against StyleGAN2 faces (1) of the training split.
The detector's face score is the larger of the two. Real faces: the training splits of
faces_ciplab/real and faces_stylegan2/real; no validation face, real or fake, is ever shown.
Every face of every class gets the same treatment before the network sees it: a random crop
of 80-100% of its side, sometimes a shrink, a flip, and a final JPEG at q60-95, so neither the
file's quality nor its size is a cue.

The threshold is the lowest that flags at most 2% of the real faces of each set in the
calibration half of the validation split (export/data.py: face_calibration); the other half is
left to export.evaluate_models. CPU only, seeded.
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

from export import data
from export.efficientnet import from_imagenet, head, trunk
from export.onnx_export import ship
from export.self_blend import self_blend
from export.torch_legacy import efficientnet_lite0
from export.training import jpeg_roundtrip, threshold_per_set
from scanner import face_finder
from scanner.evaluate import roc_auc
from scanner.faces import (
    FACE_MIN_PROBABILITY,
    FACE_MIN_SIDE,
    FACE_SEARCH_SIDE,
    aligned_face,
    find_marked_faces,
)
from scanner_plugins import face_blend
from scanner_plugins.face_blend import SIDE, network_input

SEED = 20261125
FROZEN_BLOCKS = 1  # the stem and block 0 stay ImageNet's: blend edges are low-level
LEARNING_RATE = 2e-4
OUT = Path(face_blend.__file__).parent


def build(side: int = SIDE) -> keras.Model:
    inputs = keras.Input((side, side, 3), name="input")
    pooled = layers.GlobalAveragePooling2D()(head(trunk(inputs)))
    pooled = layers.Dropout(0.3)(pooled)
    # Layer names = output names: the ONNX graph's outputs are called after the layers.
    blend = layers.Dense(1, activation="sigmoid", name="blend")(pooled)
    generated = layers.Dense(1, activation="sigmoid", name="generated")(pooled)
    return keras.Model(inputs, {"blend": blend, "generated": generated}, name="face_blend")


def pretrained(side: int = SIDE) -> keras.Model:
    model = build(side)
    filled = from_imagenet(model, efficientnet_lite0(), FROZEN_BLOCKS)
    print(f"EfficientNet-Lite0 ImageNet weights: {filled} layers filled", flush=True)
    return model


def treated(rgb: Image.Image, rng: np.random.Generator, side: int = SIDE) -> np.ndarray:
    """What every training face goes through, whatever its class: a random square crop of
    80-100% of the side, sometimes a shrink to 50-100%, a flip, a JPEG at q60-95."""
    crop = round(min(rgb.size) * rng.uniform(0.8, 1.0))
    left = int(rng.integers(0, rgb.width - crop + 1))
    top = int(rng.integers(0, rgb.height - crop + 1))
    rgb = rgb.crop((left, top, left + crop, top + crop))
    if rng.random() < 0.3:
        small = max(32, round(crop * rng.uniform(0.5, 1.0)))
        rgb = rgb.resize((small, small), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        rgb = rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return network_input(jpeg_roundtrip(rgb, int(rng.integers(60, 96))), side)


def examples(reals, generated, epoch: int, composites=(), side: int = SIDE, landmarks=None):
    """One epoch: (inputs, blend labels, blend weights, generated labels, generated weights).
    `composites`: Photoshop composites, shown twice each to the blend head (real faces appear
    twice too: as they are and self-blended). `landmarks`: per real face, its five points or
    None; self-blends put their part masks there."""
    rng = np.random.default_rng(SEED + epoch)
    landmarks = landmarks or [None] * len(reals)
    rows = []  # (input, blend label, blend weight, generated label, generated weight)
    for rgb, points in zip(reals, landmarks, strict=True):
        rows.append((treated(rgb, rng, side), 0.0, 1.0, 0.0, 1.0))
        blended = self_blend(rgb, rng, points)[0]
        rows.append((treated(blended, rng, side), 1.0, 1.0, 0.0, 0.0))
    for rgb in generated:
        rows.append((treated(rgb, rng, side), 0.0, 0.0, 1.0, 1.0))
    for rgb in [*composites, *composites]:
        rows.append((treated(rgb, rng, side), 1.0, 1.0, 0.0, 0.0))
    order = rng.permutation(len(rows))
    columns = list(zip(*[rows[i] for i in order], strict=True))
    x = np.stack(columns[0])
    return x, *(np.array(c, np.float32)[:, None] for c in columns[1:])


def face_landmarks(rgb: Image.Image) -> np.ndarray | None:
    """The five landmarks (pixels of `rgb`) of the most probable face MTCNN finds on a copy of
    at most FACE_SEARCH_SIDE px, as the scan searches; None when it finds none at
    FACE_MIN_PROBABILITY."""
    scale = min(1.0, FACE_SEARCH_SIDE / max(rgb.size))
    small = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)))
    boxes, points = face_finder.detect_with_landmarks(np.asarray(small), FACE_MIN_SIDE * scale)
    if not len(boxes) or boxes[0, 4] < FACE_MIN_PROBABILITY:
        return None
    return points[0] / scale


def aligned(images: list[Image.Image], template=None):
    """(the faces aligned as a scan aligns them for a model trained with --aligned, at each
    picture's own size; the landmarks of each in the aligned crop, or None) and the template:
    the training reals' mean landmark places as shares of the side, when none is given. A
    face MTCNN does not find stays as it is, with no landmarks."""
    found = [find_marked_faces(rgb) for rgb in images]
    pairs = zip(found, images, strict=True)
    marks = [np.array(f[0][1]) / rgb.size if f else None for f, rgb in pairs]
    if template is None:
        template = np.mean([m for m in marks if m is not None], axis=0)
        # Averaged with its mirror image (eyes and mouth corners swapped): training flips
        # half the faces, and a flipped face must fit the same places.
        mirrored = template[[1, 0, 2, 4, 3]] * [-1, 1] + [1, 0]
        template = (template + mirrored) / 2
    out, points = [], []
    for rgb, m in zip(images, marks, strict=True):
        if m is None:
            out.append(rgb)
            points.append(None)
        else:
            out.append(aligned_face(rgb, m * rgb.size, template, rgb.width))
            points.append(template * rgb.width)
    print(f"aligned {sum(p is not None for p in points)} of {len(images)} faces", flush=True)
    return out, points, template


def face_scores(model, images: list[Image.Image]) -> dict[str, np.ndarray]:
    side = model.inputs[0].shape[1]
    inputs = np.stack([network_input(i, side) for i in images])
    out = model.predict(inputs, batch_size=32, verbose=0)
    return {k: v[:, 0] for k, v in out.items()}


def load(items: list[dict]) -> list[Image.Image]:
    return [Image.open(i["path"]).convert("RGB") for i in items]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--no-composites",
        action="store_true",
        help="self-blends only, as version 1.1.0: no faces_ciplab composite in training",
    )
    parser.add_argument(
        "--side",
        type=int,
        default=SIDE,
        help=f"the face crop's side in pixels, in training and in scans (default {SIDE})",
    )
    parser.add_argument(
        "--landmark-parts",
        action="store_true",
        help="place the self-blends' part masks at each face's MTCNN landmarks, "
        "not where a centred face crop has its parts",
    )
    parser.add_argument(
        "--aligned",
        action="store_true",
        help="every face, in training and in scans, turned and scaled so that its landmarks "
        "fall where the training reals' fall on average (part masks placed there)",
    )
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()

    faces = data.faces()
    train = [i for i in faces if i["split"] == "train"]
    reals = load([i for i in train if i["label"] == 0])
    generated = load([i for i in train if i["label"] == 1 and i["set"] == "faces_stylegan2"])
    composites = []
    if not args.no_composites:  # training split only; validation composites stay unseen
        composites = load([i for i in train if i["label"] == 1 and i["set"] == "faces_ciplab"])
    landmarks = None
    if args.landmark_parts:
        landmarks = [face_landmarks(rgb) for rgb in reals]
        found = sum(p is not None for p in landmarks)
        print(f"landmarks found on {found} of {len(reals)} real faces", flush=True)
    val = [i for i in faces if i["split"] == "validation"]
    val_images = load(val)
    template = None
    if args.aligned:
        reals, landmarks, template = aligned(reals)
        generated = aligned(generated, template)[0]
        composites = aligned(composites, template)[0] if composites else composites
        val_images = aligned(val_images, template)[0]
    print(
        f"training: {len(reals)} real faces, {len(generated)} StyleGAN2 faces, "
        f"{len(composites)} composites",
        flush=True,
    )

    model = pretrained(args.side)
    steps = args.epochs * ((2 * len(reals) + len(generated) + 2 * len(composites)) // 16 + 1)
    schedule = keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss={"blend": "binary_crossentropy", "generated": "binary_crossentropy"},
    )
    for epoch in range(args.epochs):
        start = time.time()
        x, blend, blend_w, gen, gen_w = examples(
            reals, generated, epoch, composites, args.side, landmarks
        )
        history = model.fit(
            x,
            {"blend": blend, "generated": gen},
            sample_weight={"blend": blend_w[:, 0], "generated": gen_w[:, 0]},
            batch_size=16,
            epochs=1,
            verbose=0,
        )
        loss = {k: round(v[-1], 4) for k, v in history.history.items()}
        scores = face_scores(model, val_images)
        face = np.maximum(scores["blend"], scores["generated"])
        aucs = {
            name: roc_auc(face[index], [val[i]["label"] for i in index])
            for name in ("faces_ciplab", "faces_stylegan2")
            for index in [[i for i, item in enumerate(val) if item["set"] == name]]
        }
        print(
            f"epoch {epoch + 1}: {loss}, validation AUC "
            + ", ".join(f"{k} {v:.3f}" for k, v in aucs.items())
            + f", {time.time() - start:.0f} s",
            flush=True,
        )

    calibration = data.face_calibration()
    calibration_images = load(calibration)
    if args.aligned:
        calibration_images = aligned(calibration_images, template)[0]
    scores = face_scores(model, calibration_images)
    face = np.maximum(scores["blend"], scores["generated"])
    threshold, flagged = threshold_per_set(face, [i["set"] for i in calibration])
    print(f"threshold {threshold:.4f}; calibration reals flagged: {flagged}", flush=True)

    probe = np.stack([network_input(i, args.side) for i in val_images[:4]])
    sets = [i["set"] for i in calibration]
    worst = ship(
        model,
        args.out,
        probe,
        threshold,
        sets,
        flagged,
        0.02,
        epochs=args.epochs,
        seed=SEED,
        composites=len(composites),
        side=args.side,
        landmark_parts=args.landmark_parts,
        **({"template": np.round(template, 5).tolist()} if args.aligned else {}),
    )
    print(f"wrote {args.out}; Keras/ONNX max difference {worst:.1e}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
