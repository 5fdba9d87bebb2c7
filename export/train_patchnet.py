"""Train the seed's cross-entropy network (export/numpy_net.py, NumPy only) on 32x32 ELA
patches of CASIA v1's training split, write it as ONNX with the onnx package, check parity.

    python -m export.train_patchnet   # writes plugins/ela_patchnet/: model.onnx, .npz, .json

Patches: each training image, as-is and once re-saved at a random JPEG quality 70-98, is cut
into 32x32 patches of its ELA input. A patch is tampered when the ground-truth mask covers at
least half of it, authentic when the mask covers none of it (or the photo is authentic);
patches in between are left out. Every epoch takes all tampered patches and as many authentic
ones, half of them from the untouched parts of tampered photos: those share the tampered
patches' JPEG history, so the quality of the file alone cannot tell the classes apart.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np

from export import data, numpy_net, synthetic
from export.training import best_threshold, jpeg_roundtrip
from scanner.evaluate import roc_auc
from scanner_plugins.ela_patchnet import PATCH, aggregate, patch_input, tiles

SEED = 20261125
OUT = Path(__file__).resolve().parent.parent / "plugins" / "ela_patchnet"
AGGREGATIONS = ("max", "top3", "top10", "mean")


def patches(item: dict, seed: int) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """[(patches (T, 32, 32), mask coverage (T,), image label)] for the image as-is and
    re-saved once."""
    rng = np.random.default_rng(seed)
    rgb, mask = data.casia_image(item)
    out = []
    for version in (rgb, jpeg_roundtrip(rgb, int(rng.integers(70, 99)))):
        grid = tiles(patch_input(version))
        coverage = np.zeros(grid.shape[:2], np.float32)
        if mask is not None:
            coverage = tiles(mask).mean(axis=(2, 3))
        out.append((grid.reshape(-1, PATCH, PATCH), coverage.ravel(), item["label"]))
    return out


def spliced_patches(host: dict, donor: dict, seed: int) -> list[tuple]:
    """The same, for an authentic photo and a synthetic splice of it (export/synthetic.py),
    twice over with different pastes and final qualities."""
    rng = np.random.default_rng(seed)
    host_rgb, donor_rgb = data.casia_image(host)[0], data.casia_image(donor)[0]
    out = []
    for _ in range(2):
        authentic, tampered, mask = synthetic.splice_pair(host_rgb, donor_rgb, rng)
        for rgb, m, label in ((authentic, None, 0), (tampered, mask, 1)):
            grid = tiles(patch_input(rgb))
            coverage = tiles(m).mean(axis=(2, 3)) if m is not None else np.zeros(grid.shape[:2])
            out.append((grid.reshape(-1, PATCH, PATCH), coverage.ravel(), label))
    return out


def image_scores(params, items: list[dict], how: str) -> np.ndarray:
    scores = []
    for item in items:
        rgb, _ = data.casia_image(item)
        grid = tiles(patch_input(rgb))
        probs, _ = numpy_net.forward(params, grid.reshape(-1, PATCH, PATCH))
        scores.append(aggregate(probs[:, 1], how))
    return np.array(scores)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rate", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="train on synthetic splices of the authentic training photos (export/synthetic.py)",
    )
    args = parser.parse_args(argv)
    items = data.casia()
    train = [i for i in items if i["split"] == "train" and (i["label"] == 0 or i["mask"])]
    started = time.time()
    with multiprocessing.get_context("fork").Pool(max(1, os.cpu_count() or 1)) as pool:
        if args.synthetic:
            hosts = [i for i in train if i["label"] == 0]
            donors = np.random.default_rng(SEED).permutation(len(hosts))
            jobs = [
                (h, hosts[d], SEED + i) for i, (h, d) in enumerate(zip(hosts, donors, strict=True))
            ]
            found = pool.starmap(spliced_patches, jobs, chunksize=8)
        else:
            found = pool.starmap(patches, [(it, SEED + i) for i, it in enumerate(train)], 8)
        parts = [v for versions in found for v in versions]
    x = np.concatenate([p[0] for p in parts]).astype(np.float32)
    coverage = np.concatenate([p[1] for p in parts])
    from_tampered = np.concatenate([np.full(len(p[1]), p[2]) for p in parts]).astype(bool)
    positive = np.flatnonzero(coverage >= 0.5)
    clean_of_tampered = np.flatnonzero((coverage == 0) & from_tampered)
    authentic = np.flatnonzero(~from_tampered)
    print(
        f"{len(train)} images -> {len(positive)} tampered patches, {len(clean_of_tampered)} "
        f"untouched patches of tampered photos, {len(authentic)} authentic-photo patches "
        f"({time.time() - started:.0f} s)",
        flush=True,
    )

    rng = np.random.default_rng(SEED)
    params = {k: v.astype(np.float32) for k, v in numpy_net.init(SEED).items()}
    optimizer = numpy_net.Momentum(params, args.rate)
    half = len(positive) // 2
    for epoch in range(args.epochs):
        started = time.time()
        negative = np.r_[
            rng.choice(clean_of_tampered, half, replace=False),
            rng.choice(authentic, len(positive) - half, replace=False),
        ]
        index = rng.permutation(np.r_[positive, negative])
        y = (coverage[index] >= 0.5).astype(int)
        losses, correct = [], 0
        for start in range(0, len(index), args.batch):
            batch = index[start : start + args.batch]
            probs, cache = numpy_net.forward(params, x[batch])
            target = y[start : start + args.batch]
            losses.append(numpy_net.loss(probs, target))
            correct += int((probs.argmax(axis=1) == target).sum())
            optimizer.step(params, numpy_net.backward(params, cache, probs, target))
        optimizer.rate *= 0.8
        print(
            f"epoch {epoch + 1}/{args.epochs}: loss {np.mean(losses):.4f}, patch accuracy "
            f"{correct / len(index):.3f}, {len(index)} patches, {time.time() - started:.0f} s",
            flush=True,
        )

    # The aggregation and the threshold are chosen on the training split, never on validation.
    train_all = [i for i in items if i["split"] == "train"]
    labels = np.array([i["label"] for i in train_all])
    per_how = {how: image_scores(params, train_all, how) for how in AGGREGATIONS}
    aucs = {how: roc_auc(s, labels) for how, s in per_how.items()}
    how = max(aucs, key=aucs.get)
    threshold = best_threshold(per_how[how], labels)
    print("training-split image ROC AUC by aggregation:", {k: round(v, 3) for k, v in aucs.items()})

    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / "weights.npz", **params)
    model = numpy_net.to_onnx(params)
    (args.out / "model.onnx").write_bytes(model.SerializeToString())
    probe = x[rng.choice(len(x), 512, replace=False)]
    worst = parity(args.out / "model.onnx", params, probe)
    meta = {
        "threshold": threshold,
        "aggregation": how,
        "epochs": args.epochs,
        "seed": SEED,
        "parameters": int(sum(v.size for v in params.values())),
        "parity_max_abs_diff": worst,
    }
    (args.out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {args.out}: aggregation {how}, threshold {threshold:.3f}, parity {worst:.1e}")


def parity(onnx_path: Path, params: dict, patches: np.ndarray, limit: float = 1e-5) -> float:
    """Largest |NumPy - onnxruntime| over `patches`; raises above `limit`."""
    from scanner.onnx import OnnxModel

    expected, _ = numpy_net.forward(params, patches)
    got = OnnxModel(onnx_path).run(patches[:, None].astype(np.float32))[0]
    worst = float(np.abs(expected - got).max())
    if worst > limit:
        raise AssertionError(f"ONNX differs from the NumPy network by {worst:.2e} > {limit:.0e}")
    return worst


if __name__ == "__main__":
    main()
