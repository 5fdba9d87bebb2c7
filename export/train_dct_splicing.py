"""Train the DCT splicing detector (plugins/dct_splicing), export it to ONNX, check parity and
choose its threshold on real photos it never saw.

    pip install -e '.[export]'
    python -m export.train_dct_splicing     # writes plugins/dct_splicing/: model.onnx, .npz, .json

Input: for every 8x8 luma block, its 15 lowest-frequency quantised AC coefficients and the
file's steps for them (plugins/dct_splicing.block_input) and, since 1.1.0, the shares of its
pixel steps at each of the 8 positions of a block row and column (grid_phases: where an earlier
JPEG grid put its block edges; --no-grid-phases leaves them out); the network one-hot encodes
|k| up to MAX_VALUE inside the graph, so that the local histograms a double compression shapes
are one convolution away. Output: per block, P(spliced region). The only loss is per block,
against each block's share of the mask: a tampered file's untouched background is a negative
like every block of an authentic photo, so what the file as a whole went through (its quality,
the number of saves) cannot tell the classes apart; only a region that differs from its
surroundings can.

Data, every example re-saved at a random quality 60-100 after any editing, both classes alike:
- CASIA v1's training split (split by source photo): authentic photos, and tampered photos
  with a mask (turned to landscape, cropped to 384x256: a resize would erase the traces);
- synthetic splices (export/synthetic.py) between CASIA's authentic training photos, both
  halves of each pair (the host saved as the tampered copy was).
With --real-hosts (measured, not the shipped recipe: MODEL_CARD.md), half of the calibration
groups of camera photos and Kodak scans join training: windows of them as saved and shrunk, and
splice pairs with them as hosts; the threshold is then chosen on the other calibration half.
With --once-saved-splices (measured, not shipped), half the synthetic pairs are saved once
after the paste instead of twice.
The threshold is the lowest that flags at most 2% of each set of real photos from other
sources (the calibration halves of camera_photos, as they come and shrunk + re-saved, and
of the Kodak scans at q75/q85/q95; the face sets' real training photos). CPU only, seeded;
about 20 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from multiprocessing import Pool
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops
from PIL import Image

from export import data, synthetic
from export.onnx_export import ship
from export.training import jpeg_roundtrip, threshold_per_set
from scanner.evaluate import roc_auc
from scanner.imaging import decode
from scanner_plugins import dct_splicing
from scanner_plugins.dct_splicing import PHASES, POSITIONS, features, neighbourhood_max, tiles
from scanner_plugins.metadata.jpeg import estimate_quality, luma_plane

SEED = 20261206
SIZE = (384, 256)  # width, height: CASIA v1's landscape size, a multiple of 8
MAX_VALUE = 10  # |k| above this shares one bin: the histogram's head is where DQ shows
WIDTH = 64
DILATIONS = (1, 2, 4, 8, 1)  # receptive field of 33 blocks: a region and its surroundings
POSITIVE_WEIGHT = 4.0  # spliced blocks are about a tenth of the tampered photos' blocks
LEARNING_RATE = 1e-3
OUT = Path(dct_splicing.__file__).parent
# The input also carries each block's blocking per pixel position (dct_splicing.grid_phases;
# since 1.1.0, off with --no-grid-phases). Set before the worker pool starts, so that its
# workers see it.
GRID_PHASES = True
# --once-saved-splices: half the synthetic pairs are saved once after the paste, as CASIA's
# tampered files come (the pair's save and the final one at the same quality), not twice.
ONCE_SAVED_SPLICES = False


def build(phases: bool = False) -> keras.Model:
    n = len(POSITIONS)
    inputs = keras.Input((None, None, 2 * n + (2 * PHASES if phases else 0)), name="input")
    values, steps = inputs[..., :n], inputs[..., n : 2 * n]
    magnitude = ops.minimum(ops.abs(values), float(MAX_VALUE))
    one_hot = [ops.cast(ops.equal(magnitude, float(v)), "float32") for v in range(MAX_VALUE + 1)]
    # 4 / step: about 1 at q75's low frequencies, finer tables larger.
    parts = [*one_hot, 4.0 / steps]
    if phases:  # shares of 1/8 on average: times 8, about 1
        parts.append(inputs[..., 2 * n :] * float(PHASES))
    x = ops.concatenate(parts, axis=-1)
    x = layers.Conv2D(WIDTH, 1, activation="relu")(x)
    for dilation in DILATIONS:
        x = layers.Conv2D(WIDTH, 3, padding="same", dilation_rate=dilation, use_bias=False)(x)
        x = layers.Activation("relu")(layers.BatchNormalization()(x))
    blocks = layers.Conv2D(1, 1, activation="sigmoid", name="blocks")(x)
    return keras.Model(inputs, blocks, name="dct_splicing")


def jpeg(rgb: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG", quality=int(quality))
    return buffer.getvalue()


def encoded(raw: bytes) -> np.ndarray:
    """The network's input for a whole (small) JPEG."""
    return features(*luma_plane(raw), GRID_PHASES)


def block_targets(mask: np.ndarray | None) -> np.ndarray:
    """Each block's tampered share (zeros for an untouched photo)."""
    rows, cols = SIZE[1] // 8, SIZE[0] // 8
    if mask is None:
        return np.zeros((rows, cols), np.float32)
    return mask.reshape(rows, 8, cols, 8).mean(axis=(1, 3)).astype(np.float32)


def landscape(rgb: Image.Image, mask: np.ndarray | None):
    """Turned to landscape and cropped to SIZE from the top left (the JPEG grid stays put), or
    None when smaller."""
    if rgb.height > rgb.width:
        rgb = rgb.transpose(Image.Transpose.ROTATE_90)
        mask = None if mask is None else np.rot90(mask).copy()
    if rgb.width < SIZE[0] or rgb.height < SIZE[1]:
        return None
    mask = None if mask is None else mask[: SIZE[1], : SIZE[0]]
    return rgb.crop((0, 0, *SIZE)), mask


def casia_example(args):
    item, quality, earlier = args
    rgb, mask = data.casia_image(item)
    turned = landscape(rgb, mask)
    if turned is None or (item["label"] == 1 and mask is None):
        return []
    rgb, mask = turned
    if earlier:  # an authentic photo given a tampered file's history (see epoch_examples)
        rgb = jpeg_roundtrip(rgb, earlier)
    return [(encoded(jpeg(rgb, quality)), block_targets(mask))]


def file_quality(item: dict) -> int:
    with Image.open(item["path"]) as im:
        return estimate_quality(im.quantization)[0]


def synthetic_examples(args):
    host_item, donor_item, seed = args
    rng = np.random.default_rng(seed)
    turned = landscape(data.casia_image(host_item)[0], None)
    if turned is None:
        return []
    host = turned[0]
    donor = data.casia_image(donor_item)[0].resize(host.size)
    once = ONCE_SAVED_SPLICES and rng.random() < 0.5
    first = int(rng.integers(60, 101)) if once else None
    authentic, tampered, mask = synthetic.splice_pair(host, donor, rng, first)
    quality = int(rng.integers(60, 101))
    if once:  # saved again at the same quality: its coefficients stay within a step or so
        quality = first
    return [
        (encoded(jpeg(authentic, quality)), block_targets(None)),
        (encoded(jpeg(tampered, quality)), block_targets(mask)),
    ]


REAL_ROUNDS = 3  # per training photo and epoch, each round: 3 windows as saved, 1 shrunk, 2 pairs


def window(luma: np.ndarray, table: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """The network's input for a random CASIA-size window of blocks of a luma plane."""
    rows, cols = luma.shape[0] // 8 - SIZE[1] // 8, luma.shape[1] // 8 - SIZE[0] // 8
    if rows < 0 or cols < 0:
        return None
    y, x = int(rng.integers(rows + 1)) * 8, int(rng.integers(cols + 1)) * 8
    region = luma[y : y + SIZE[1], x : x + SIZE[0]]
    return features(region, table, GRID_PHASES)


def real_examples(args):
    """Examples from a real photo of another source (a camera's own JPEG, or a Kodak scan saved
    once at a random quality): windows of it as saved, a window of it shrunk and re-saved, and
    splice pairs with a window of it as the host (a CASIA training photo as the donor). These
    are what real photos look like to the detector outside CASIA: a camera saved them once,
    with its own tables, which CASIA's re-saved photos never show."""
    item, donor_item, seed = args
    rng = np.random.default_rng(seed)
    raw = Path(item["path"]).read_bytes()
    rgb = decode(raw)[0]
    if item["set"] != "camera_photos":  # lossless: its first save is ours
        raw = jpeg(rgb, int(rng.integers(60, 101)))
    clean = block_targets(None)
    out = []
    luma, table = luma_plane(raw)
    for _ in range(3):
        if (x := window(luma, table, rng)) is not None:
            out.append((x, clean))
    scale = rng.uniform(0.5, 0.9)
    small = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.BICUBIC)
    if (x := window(*luma_plane(jpeg(small, int(rng.integers(60, 101)))), rng)) is not None:
        out.append((x, clean))
    if rgb.width < SIZE[0] or rgb.height < SIZE[1]:
        return out
    donor = data.casia_image(donor_item)[0].resize(SIZE)
    for _ in range(2):
        left = int(rng.integers((rgb.width - SIZE[0]) // 8 + 1)) * 8
        top = int(rng.integers((rgb.height - SIZE[1]) // 8 + 1)) * 8
        host = rgb.crop((left, top, left + SIZE[0], top + SIZE[1]))
        authentic, tampered, mask = synthetic.splice_pair(host, donor, rng)
        quality = int(rng.integers(60, 101))
        out.append((encoded(jpeg(authentic, quality)), clean))
        out.append((encoded(jpeg(tampered, quality)), block_targets(mask)))
    return out


def epoch_examples(pool, train: list[dict], epoch: int, reals: list[dict] = ()):
    """One epoch's examples. CASIA's tampered files were last saved at other qualities than
    its authentic ones (mostly q75 against q80-90), and that save leaves its own trace under
    any re-save; so half the authentic photos first get a save at the quality of a random
    tampered training file: an earlier save then says nothing about the label."""
    rng = np.random.default_rng(SEED + epoch)
    tampered_qualities = [q for item, q in QUALITIES.items() if item[1] == 1]
    jobs = [
        (
            item,
            int(rng.integers(60, 101)),
            int(rng.choice(tampered_qualities)) if item["label"] == 0 and rng.random() < 0.5 else 0,
        )
        for item in train
    ]
    hosts = [item for item in train if item["label"] == 0]
    pairs = [
        (host, hosts[int(rng.integers(len(hosts)))], int(rng.integers(2**31))) for host in hosts
    ]
    examples = sum(pool.map(casia_example, jobs), []) + sum(pool.map(synthetic_examples, pairs), [])
    photo_jobs = [
        (item, hosts[int(rng.integers(len(hosts)))], int(rng.integers(2**31)))
        for item in reals
        for _ in range(REAL_ROUNDS)
    ]
    examples += sum(pool.map(real_examples, photo_jobs), [])
    order = rng.permutation(len(examples))
    x = np.stack([examples[i][0] for i in order])
    y = np.stack([examples[i][1] for i in order])[..., None]
    return x, y


QUALITIES: dict[tuple[str, int], int] = {}  # (path, label) -> estimated quality, train split


def image_score(model, raw: bytes) -> float:
    """The detector's score for a JPEG, as plugins/dct_splicing computes it."""
    read = tiles(raw, GRID_PHASES)
    if isinstance(read, str):
        return float("nan")
    maps = model.predict(np.stack(read[0]), verbose=0)[..., 0]
    return max(neighbourhood_max(m) for m in maps)


def validation_files(val: list[dict], quality: int | None) -> list[bytes]:
    out = []
    for item in val:
        raw = Path(item["path"]).read_bytes()
        out.append(raw if quality is None else jpeg(data.casia_image(item)[0], quality))
    return out


def calibration_reals(photos: list[dict] | None = None) -> list[tuple[bytes, str]]:
    """The real photos the threshold is chosen on (the "calibration" split of `photos`, by
    default of data.real_photos()), as files the detector reads."""
    out = []
    for item in data.real_photos() if photos is None else photos:
        if item["split"] != "calibration":
            continue
        raw = Path(item["path"]).read_bytes()
        rgb = decode(raw)[0]
        if item["set"] == "camera_photos":
            out.append((raw, item["set"]))
            small = rgb.resize((round(rgb.width * 0.6), round(rgb.height * 0.6)), Image.BICUBIC)
            out.append((jpeg(small, 80), item["set"]))
        else:
            out += [(jpeg(rgb, q), item["set"]) for q in (75, 85, 95)]
    for item in data.faces():
        if item["label"] == 0 and item["split"] == "train":
            out.append((Path(item["path"]).read_bytes(), item["set"]))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--real-hosts",
        action="store_true",
        help="also train on half of the calibration groups of camera photos and Kodak scans "
        "(as saved, shrunk, and as splice hosts); the threshold is then chosen on the rest",
    )
    parser.add_argument(
        "--no-grid-phases",
        action="store_true",
        help="the coefficients and steps alone, without each block's blocking per pixel "
        "position (dct_splicing.grid_phases): the 1.0.0 recipe",
    )
    parser.add_argument(
        "--once-saved-splices",
        action="store_true",
        help="half the synthetic splice pairs saved once after the paste, as CASIA's tampered "
        "files come, instead of twice",
    )
    args = parser.parse_args(argv)
    global GRID_PHASES, ONCE_SAVED_SPLICES
    GRID_PHASES = not args.no_grid_phases
    ONCE_SAVED_SPLICES = args.once_saved_splices
    keras.utils.set_random_seed(SEED)

    items = data.casia()
    train = [i for i in items if i["split"] == "train"]
    val = [i for i in items if i["split"] == "validation"]
    labels = [i["label"] for i in val]
    QUALITIES.update({(i["path"], i["label"]): file_quality(i) for i in train})
    authentic = [i for i in val if i["label"] == 0]
    checks = {"as-is": validation_files(val, None), "q85": validation_files(val, 85)}
    probe = [jpeg(jpeg_roundtrip(data.casia_image(i)[0], 75), 85) for i in authentic]
    probe += validation_files(authentic, 85)
    probe_labels = [1] * len(authentic) + [0] * len(authentic)
    photos = data.real_photos(train_share=0.5 if args.real_hosts else 0.0)
    photo_train = [i for i in photos if i["split"] == "train"]
    model = build(GRID_PHASES)
    with Pool(2) as pool:
        x, y = epoch_examples(pool, train, 0, photo_train)
        steps = args.epochs * (len(x) // 16 + 1)
        model.compile(
            optimizer=keras.optimizers.Adam(
                keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)
            ),
            loss="binary_crossentropy",
        )
        for epoch in range(args.epochs):
            start = time.time()
            if epoch:
                x, y = epoch_examples(pool, train, epoch, photo_train)
            weights = np.where(y[..., 0] > 0.5, POSITIVE_WEIGHT, 1.0)
            history = model.fit(x, y, sample_weight=weights, batch_size=16, epochs=1, verbose=0)
            line = f"epoch {epoch + 1}: loss {history.history['loss'][-1]:.4f}"
            if epoch % 4 == 3 or epoch == args.epochs - 1:
                for name, files in checks.items():
                    scores = [image_score(model, raw) for raw in files]
                    line += f", validation AUC {name} {roc_auc(scores, labels):.3f}"
                scores = [image_score(model, raw) for raw in probe]
                line += f", shortcut probe AUC {roc_auc(scores, probe_labels):.3f}"
            print(f"{line}, {time.time() - start:.0f} s", flush=True)

    reals = calibration_reals(photos)
    scores = np.array([image_score(model, raw) for raw, _ in reals])
    sets = [name for _, name in reals]
    usable = ~np.isnan(scores)
    threshold, flagged = threshold_per_set(scores[usable], np.asarray(sets)[usable])
    print(f"threshold {threshold:.4f}; calibration reals flagged: {flagged}", flush=True)
    inputs = [encoded(raw) for raw in checks["q85"][:12]]
    probe = np.stack([x for x in inputs if x.shape[:2] == (SIZE[1] // 8, SIZE[0] // 8)][:4])
    worst = ship(
        model,
        args.out,
        probe,
        threshold,
        [s for s, u in zip(sets, usable, strict=True) if u],
        flagged,
        0.02,
        epochs=args.epochs,
        seed=SEED,
        grid_phases=GRID_PHASES,
        once_saved_splices=ONCE_SAVED_SPLICES,
    )
    print(f"wrote {args.out}; Keras/ONNX max difference {worst:.1e}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
