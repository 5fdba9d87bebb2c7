"""Fine-tune EfficientNet-Lite0 (ImageNet weights) into the generated-image detector, export it
to ONNX, check parity, choose the threshold on real photos it never saw (plugins/generated).

    pip install -e '.[export]'
    python -m export.train_generated          # writes plugins/generated/: model.onnx, .npz, .json
    python -m export.train_generated --leave-out sd15 --out /tmp/no-sd15   # generalisation

After Wang et al. 2020: a pretrained classifier fine-tuned on generated against real pictures,
with blur and JPEG augmentation, carries over to generators it never saw. Data:
export/data.py `generated_images` (CNNDetection's ten GAN families, StyleGAN2 faces, Stable
Diffusion 1.5 tiles; real photos of the same sets and CASIA's authentic ones), training split
only. Every picture of either class gets the same treatment: the detector's own view
(scanner_plugins.generated.view), sometimes a shrink to 50-100%, sometimes a blur, a random
SIDE crop, a flip, and always a final JPEG at q60-95, so that neither file format (SD's WebP,
Kodak's PNG, the cameras' JPEGs), quality nor size is a cue.

Since 1.1.0 the generated faces weigh as much in all as the real faces (`face_balance`): with
StyleGAN2 left out, the few generated faces left would otherwise teach "a face is real".
`--leave-out FAMILY` trains without that generator's pictures (its reals stay), to measure
how the recipe does on a generator it never saw (export.evaluate_models generated --model-dir).
The threshold is the lowest that flags at most 2% of each calibration set of real photos:
the calibration halves (by camera model) of camera_photos, as they come and re-saved at q75 /
q85 / q95, of the Kodak scans saved at those qualities, and half of the face sets' validation
reals. CPU only, seeded.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from PIL import Image, ImageFilter

from export import data
from export.efficientnet import MEAN, from_imagenet, head, stages, trunk
from export.onnx_export import load_weights, ship
from export.simulated_generator import simulated_pair
from export.torch_legacy import efficientnet_lite0
from export.training import jpeg_roundtrip, threshold_per_set
from scanner.evaluate import roc_auc
from scanner_plugins import generated
from scanner_plugins.generated import SIDE, crops, view

SEED = 20261206
FROZEN_BLOCKS = 1  # the stem and block 0 stay ImageNet's
LEARNING_RATE = 2e-4
OUT = Path(generated.__file__).parent


# NPR's residuals (below) have a standard deviation of about 14 grey levels on the training
# pictures after their treatment, where the network's usual input, (x - 127) / 128, has 0.52:
# this gain gives the ImageNet stem inputs of the scale it was trained on (measured on 200
# training pictures before any NPR run).
NPR_GAIN = 5.0


class NeighbourResidual(layers.Layer):
    """NPR (Tan et al., CVPR 2024, "Rethinking the up-sampling operations in CNN-based
    generative network for generalizable deepfake detection"): each pixel minus the top-left
    pixel of its 2x2 cell. Generators make their pictures by up-sampling, which ties
    neighbouring pixels together; the residual keeps those ties and removes what the picture
    shows. Returned around the trunk's mean, scaled by NPR_GAIN, as the trunk's 0..255 input."""

    def call(self, x):
        anchor = keras.ops.repeat(keras.ops.repeat(x[:, ::2, ::2, :], 2, axis=1), 2, axis=2)
        return (x - anchor) * NPR_GAIN + MEAN


def build(npr: bool = False) -> keras.Model:
    inputs = keras.Input((SIDE, SIDE, 3), name="input")
    x = NeighbourResidual(name="npr")(inputs) if npr else inputs
    pooled = layers.GlobalAveragePooling2D()(head(trunk(x)))
    pooled = layers.Dropout(0.3)(pooled)
    score = layers.Dense(1, activation="sigmoid", name="score")(pooled)
    return keras.Model(inputs, score, name="generated")


def build_patches(stage: int) -> tuple[keras.Model, keras.Model]:
    """After Chai et al. 2020 ("What makes fake images detectable?"): the trunk cut after
    `stage`, so that each output position sees only a small patch (stage 1: 19 px, stage 2:
    67 px), a 1x1 classifier per position, trained with the picture's label on every patch;
    the picture's score is the mean of its patches'. A small receptive field cannot learn what
    the picture shows (a face, a painting), only how its pixels were made. Returns the model
    trained (a map of per-patch probabilities) and the one shipped (their mean)."""
    inputs = keras.Input((SIDE, SIDE, 3), name="input")
    x = stages(inputs)[stage]
    x = layers.Conv2D(128, 1, activation="relu", name="patch_hidden")(x)
    patches = layers.Conv2D(1, 1, activation="sigmoid", name="patch_score")(x)
    score = layers.GlobalAveragePooling2D(name="score")(patches)
    return keras.Model(inputs, patches), keras.Model(inputs, score, name="generated")


def pretrained(stage: int | None = None, npr: bool = False) -> tuple[keras.Model, keras.Model]:
    """(model to fit, model to ship): the same model unless patches are scored (`stage`).
    With `npr` the stem and block 0 are trained too: their ImageNet filters were made for
    pictures, not for residuals."""
    if stage is None:
        model = fitted = build(npr)
    else:
        fitted, model = build_patches(stage)
    filled = from_imagenet(fitted, efficientnet_lite0(), -1 if npr else FROZEN_BLOCKS)
    print(f"EfficientNet-Lite0 ImageNet weights: {filled} layers filled", flush=True)
    return fitted, model


def shipped(folder: Path = OUT) -> keras.Model:
    """The Keras model of a detector folder, built as its model.json says, with its weights."""
    meta = json.loads((folder / "model.json").read_text())
    stage = meta.get("stage")
    model = build(meta.get("npr", False)) if stage is None else build_patches(stage)[1]
    return load_weights(model, folder / "weights.npz")


BLUR_SHARE = 0.1  # of training pictures blurred (Wang et al. 2020 blurred half: --blur 0.5)


def treated(rgb: Image.Image, rng: np.random.Generator, blur: float = BLUR_SHARE) -> np.ndarray:
    """What every training picture goes through, whatever its class."""
    picture = cropped(rgb, rng, blur)
    return np.asarray(jpeg_roundtrip(picture, int(rng.integers(60, 96))), np.float32)


def cropped(rgb: Image.Image, rng: np.random.Generator, blur: float = BLUR_SHARE) -> Image.Image:
    """treated's work before the final JPEG: view, shrink, blur, crop, mirror."""
    rgb = view(rgb)
    if rng.random() < 0.5:
        scale = rng.uniform(max(0.5, SIDE / min(rgb.size)), 1.0)
        size = (max(SIDE, round(rgb.width * scale)), max(SIDE, round(rgb.height * scale)))
        rgb = rgb.resize(size, Image.Resampling.BILINEAR)
    if rng.random() < blur:
        rgb = rgb.filter(ImageFilter.GaussianBlur(rng.uniform(0.1, 3.0)))
    left = int(rng.integers(0, rgb.width - SIDE + 1))
    top = int(rng.integers(0, rgb.height - SIDE + 1))
    rgb = rgb.crop((left, top, left + SIDE, top + SIDE))
    if rng.random() < 0.5:
        rgb = rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return rgb


def simulated_examples(
    reals: list[Image.Image], share: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(pictures, labels): for `share` of the real training pictures, a crop remade by a random
    upsampler (1) and the same crop remade by a plain filter (0), each then saved as JPEG at
    q60-95 like every other training picture (export/simulated_generator.py)."""
    out, labels = [], []
    for rgb in reals:
        if rng.random() >= share:
            continue
        for picture, label in zip(simulated_pair(cropped(rgb, rng), rng), (1, 0), strict=True):
            out.append(np.asarray(jpeg_roundtrip(picture, int(rng.integers(60, 96))), np.float32))
            labels.append(label)
    return np.stack(out), np.array(labels, np.float32)


def picture_scores(model, images: list[Image.Image]) -> np.ndarray:
    """The detector's score for each picture: the mean over its crops, as the plugin does."""
    per = [crops(rgb) for rgb in images]
    flat = model.predict(np.stack([c for p in per for c in p]), batch_size=32, verbose=0)[:, 0]
    out, index = [], 0
    for p in per:
        out.append(float(flat[index : index + len(p)].mean()))
        index += len(p)
    return np.array(out)


FACE_FAMILIES = frozenset({"stylegan2", "ciplab", "stargan", "deepfake"})


def face_balance(items: list[dict]) -> np.ndarray:
    """Per training picture, a weight that gives the generated faces as much weight in all as
    the real ones (every other picture 1). Without it, a training set whose only faces are real
    (StyleGAN2 left out) teaches "a face is real", which is content, not a generator's trace."""
    face = np.array([i["family"] in FACE_FAMILIES for i in items])
    fake = np.array([i["label"] == 1 for i in items])
    weights = np.ones(len(items), np.float32)
    if (face & fake).any():
        weights[face & fake] = (face & ~fake).sum() / (face & fake).sum()
    return weights


def blur_of(item: dict, args) -> float:
    """The share of blurred copies for a training picture: faces may have their own."""
    face_blur = args.blur if args.face_blur is None else args.face_blur
    return face_blur if item["family"] in FACE_FAMILIES else args.blur


def calibration_reals() -> list[tuple[Image.Image, str]]:
    """The real photos the threshold is chosen on, with their set's name."""
    out = []
    for item in data.real_photos():
        if item["split"] != "calibration":
            continue
        rgb = data.load_rgb(item)
        if item["set"] == "camera_photos":
            out.append((rgb, item["set"]))
        out += [(jpeg_roundtrip(rgb, q), item["set"]) for q in (75, 85, 95)]
    out += [(data.load_rgb(i), i["set"]) for i in data.face_calibration()]
    return out


def usable(items: list[dict]) -> list[tuple[dict, Image.Image]]:
    loaded = [(i, data.load_rgb(i)) for i in items]
    return [(i, rgb) for i, rgb in loaded if min(rgb.size) >= SIDE]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--leave-out",
        help="a generator family to train without (sd15, stylegan2, cnndetection; all: no "
        "generated picture, with --simulated a measure of the simulated fakes alone)",
    )
    parser.add_argument(
        "--simulated",
        type=float,
        default=0.0,
        help="share of the real training pictures also shown, each epoch, remade by a random "
        "generator-like upsampler (fake) and by a plain filter (real); default 0",
    )
    parser.add_argument(
        "--stage",
        type=int,
        help="score small patches: the trunk cut after this stage (0-6), per-patch loss",
    )
    parser.add_argument(
        "--no-face-balance",
        action="store_true",
        help="every picture weighted 1, as version 1.0 (default since 1.1.0: generated faces "
        "weighted to the real faces' total)",
    )
    parser.add_argument(
        "--blur",
        type=float,
        default=BLUR_SHARE,
        help=f"share of training pictures given a Gaussian blur (default {BLUR_SHARE})",
    )
    parser.add_argument(
        "--face-blur",
        type=float,
        help="share of face pictures (both classes) blurred, when it differs from --blur",
    )
    parser.add_argument(
        "--simulated-only",
        action="store_true",
        help="train on the simulated pairs alone (with --leave-out all: how far the simulated "
        "upsamplers' traces carry over to real generators)",
    )
    parser.add_argument(
        "--npr",
        action="store_true",
        help="the network sees NPR residuals (each pixel minus its 2x2 cell's first), not RGB",
    )
    parser.add_argument(
        "--calibrate-only",
        action="store_true",
        help="keep the weights in --out (weights.npz) and choose the threshold again",
    )
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    if args.calibrate_only:
        meta = json.loads((args.out / "model.json").read_text())
        kept = {
            key: meta.get(key, False) for key in RECIPE_KEYS if key in meta or key == "face_balance"
        }
        calibrate_and_ship(shipped(args.out), args.out, kept)
        return

    items = data.generated_images()
    gan_families = {i["family"] for i in data.gan()}
    # "cnndetection" leaves out all ten of CNNDetection's GAN families at once.
    left_out = gan_families if args.leave_out == "cnndetection" else {args.leave_out}
    if args.leave_out == "all":
        left_out = gan_families | {"stylegan2", "sd15"}
    train = [
        i
        for i in items
        if i["split"] == "train" and not (i["label"] == 1 and i["family"] in left_out)
    ]
    train = usable(train)
    val = usable([i for i in items if i["split"] == "validation"])
    # Views made once: the 7 MP camera photos would otherwise be shrunk every epoch.
    train = [(i, view(rgb)) for i, rgb in train]
    labels = np.array([i["label"] for i, _ in train], np.float32)
    print(f"training: {int(labels.sum())} generated, {int(len(labels) - labels.sum())} real")
    weights = np.ones(len(train), np.float32)
    if not args.no_face_balance:
        weights = face_balance([i for i, _ in train])
        print(f"face balance: weights {weights.min():.2f}-{weights.max():.2f}", flush=True)

    fitted, model = pretrained(args.stage, args.npr)
    # Simulated pairs (--simulated) add about two pictures per real one shown remade.
    simulated = round(2 * args.simulated * (len(labels) - labels.sum()))
    shown = simulated if args.simulated_only else len(train) + simulated
    steps = args.epochs * (shown // 16 + 1)
    schedule = keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)
    fitted.compile(optimizer=keras.optimizers.Adam(schedule), loss="binary_crossentropy")
    # Every patch is given its picture's label (a map model's target has the map's shape).
    targets = labels.reshape((-1,) + (1,) * (len(fitted.output.shape) - 1))
    targets = np.broadcast_to(targets, (len(labels),) + tuple(fitted.output.shape[1:]))
    val_labels = np.array([i["label"] for i, _ in val])
    val_family = np.array([i["family"] for i, _ in val])
    for epoch in range(args.epochs):
        start = time.time()
        rng = np.random.default_rng(SEED + epoch)
        x = np.stack([treated(rgb, rng, blur_of(i, args)) for i, rgb in train])
        y, w = targets, weights
        if args.simulated:
            reals = [rgb for i, rgb in train if i["label"] == 0]
            extra, extra_labels = simulated_examples(reals, args.simulated, rng)
            x = np.concatenate([x, extra])
            extra_targets = extra_labels.reshape((-1,) + (1,) * (targets.ndim - 1))
            extra_targets = np.broadcast_to(extra_targets, (len(extra),) + targets.shape[1:])
            y = np.concatenate([targets, extra_targets])
            w = np.concatenate([weights, np.ones(len(extra), np.float32)])
            if args.simulated_only:  # the pairs alone: nothing but how pixels were made up
                x, y, w = x[len(train) :], y[len(train) :], w[len(train) :]
        history = fitted.fit(
            x, y, sample_weight=w, batch_size=16, epochs=1, shuffle=True, verbose=0
        )
        scores = picture_scores(model, [jpeg_roundtrip(rgb, 85) for _, rgb in val])
        aucs = {}
        for name, fams in (("cnndetection", gan_families), ("stylegan2", {"stylegan2"})):
            mask = np.isin(val_family, list(fams))
            aucs[name] = roc_auc(scores[mask], val_labels[mask])
        fakes, reals = val_family == "sd15", val_labels == 0
        aucs["sd15 vs all reals"] = roc_auc(
            np.r_[scores[fakes], scores[reals]], [1] * fakes.sum() + [0] * reals.sum()
        )
        print(
            f"epoch {epoch + 1}: loss {history.history['loss'][-1]:.4f}, validation AUC at q85 "
            + ", ".join(f"{k} {v:.3f}" for k, v in aucs.items())
            + f", {time.time() - start:.0f} s",
            flush=True,
        )

    calibrate_and_ship(model, args.out, recipe(args))


def recipe(args) -> dict:
    """What model.json records of how the weights were trained (the defaults left out)."""
    out = {"epochs": args.epochs, "seed": SEED, "left_out": args.leave_out}
    out["face_balance"] = not args.no_face_balance
    optional = {"blur": (args.blur, BLUR_SHARE), "face_blur": (args.face_blur, None)}
    optional |= {"simulated": (args.simulated, 0.0), "stage": (args.stage, None)}
    optional |= {"npr": (args.npr, False)}
    return out | {key: value for key, (value, default) in optional.items() if value != default}


RECIPE_KEYS = (
    "epochs",
    "seed",
    "left_out",
    "face_balance",
    "blur",
    "face_blur",
    "simulated",
    "stage",
    "npr",
)


def calibrate_and_ship(model, out: Path, trained: dict) -> None:
    """Choose the threshold on the calibration reals and write the detector's folder, with
    `trained` (recipe()) in its model.json."""
    calibration = calibration_reals()
    scores = picture_scores(model, [rgb for rgb, _ in calibration])
    sets = [s for _, s in calibration]
    threshold, flagged = threshold_per_set(scores, sets)
    print(f"threshold {threshold:.4f}; calibration reals flagged: {flagged}", flush=True)
    probe = np.stack([c for rgb, _ in calibration[:2] for c in crops(rgb)])
    worst = ship(model, out, probe, threshold, sets, flagged, 0.02, **trained)
    print(f"wrote {out}; Keras/ONNX max difference {worst:.1e}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
