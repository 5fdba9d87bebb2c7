"""Fit the GAN spectrum detector (export/spectrum.py) on the training splits of
faces_stylegan2 and gan_cnndetection, and write its ONNX graph.

    python -m export.train_spectrum   # writes plugins/gan_spectrum/: model.onnx, model.json

The profile is computed by the same ONNX graph the plugin runs, so training and scanning see
identical features. Before fitting the shipped model, the same recipe is cross-validated
(5 folds over all images) to give per-generator numbers: each CNNDetection family has only
about 33 images, too few to split off a validation set per family.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from export import data, spectrum
from export.training import best_threshold
from scanner.evaluate import roc_auc
from scanner.imaging import decode
from scanner.onnx import OnnxModel
from scanner_plugins.gan_spectrum import crop

OUT = Path(__file__).resolve().parent.parent / "plugins" / "gan_spectrum"
L2 = 1e-3  # fixed in advance, not tuned on validation


def items() -> list[dict]:
    faces = [dict(i, family="faces_stylegan2") for i in data.faces(("faces_stylegan2",))]
    return faces + data.gan()


def first_output(model: OnnxModel, rows: list[dict]) -> np.ndarray:
    """The model's first output for every row's crop, in batches of 64."""
    parts = []
    for start in range(0, len(rows), 64):
        crops = [crop(decode(Path(r["path"]).read_bytes())[0]) for r in rows[start : start + 64]]
        parts.append(model.run(np.stack(crops))[0])
    return np.concatenate(parts)


def fit(x: np.ndarray, y: np.ndarray, hidden: int) -> dict:
    return spectrum.fit_dense(x, y, hidden, L2) if hidden else spectrum.fit_logistic(x, y, L2)


def cross_validated(x, rows: list[dict], hidden: int, folds: int = 5) -> dict[str, float]:
    """Out-of-fold ROC AUC per family (folds by a fixed permutation)."""
    y = np.array([r["label"] for r in rows])
    fold = np.random.default_rng(0).permutation(np.arange(len(rows)) % folds)
    oof = np.zeros(len(rows))
    for k in range(folds):
        oof[fold == k] = spectrum.predict(fit(x[fold != k], y[fold != k], hidden), x[fold == k])
    families = np.array([r["family"] for r in rows])
    gan = families != "faces_stylegan2"
    out = {f: roc_auc(oof[families == f], y[families == f]) for f in sorted(set(families))}
    out["gan_cnndetection (pooled)"] = roc_auc(oof[gan], y[gan])
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--hidden",
        type=int,
        default=64,
        help="ReLU units of the small dense network (default 64); 0: logistic regression",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = items()
    (args.out / "profile.onnx").write_bytes(spectrum.build().SerializeToString())
    x = first_output(OnnxModel(args.out / "profile.onnx"), rows)
    (args.out / "profile.onnx").unlink()
    print("5-fold out-of-fold ROC AUC of the recipe, per family:")
    for family, auc in cross_validated(x, rows, args.hidden).items():
        n = sum(r["family"] == family for r in rows) if "pooled" not in family else ""
        print(f"  {family} {n}: {auc:.3f}")

    train = np.array([r["split"] == "train" for r in rows])
    y = np.array([r["label"] for r in rows])
    classifier = fit(x[train], y[train], args.hidden)
    model = spectrum.build(classifier)
    (args.out / "model.onnx").write_bytes(model.SerializeToString())
    train_rows = [r for r, t in zip(rows, train, strict=True) if t]
    train_scores = first_output(OnnxModel(args.out / "model.onnx"), train_rows)[:, 0]
    threshold = best_threshold(train_scores, y[train])
    meta = {
        "threshold": threshold,
        "classifier": f"dense, {args.hidden} ReLU units" if args.hidden else "logistic regression",
        "l2": L2,
        "train_images": int(train.sum()),
    }
    (args.out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {args.out}: {int(train.sum())} training images, threshold {threshold:.3f}")


if __name__ == "__main__":
    main()
