"""The seed's cross-entropy network: hand-written gradients checked against finite differences,
the onnx-package graph against the NumPy forward pass, a training run that learns, and the
shipped ELA-PatchNet on real CASIA images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from export import data, numpy_net
from scanner.evaluate import evaluate
from scanner.onnx import OnnxModel
from scanner_plugins.ela_patchnet import ElaPatchNet, patch_input, tiles

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "ela_patchnet"
needs_data = pytest.mark.skipif(not data.DATA.is_dir(), reason=f"needs {data.DATA}")


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    params = numpy_net.init(1)  # float64 throughout, so differences are exact enough
    params["filter_bias"] = rng.normal(0, 0.1, numpy_net.FILTERS)
    x, y = rng.random((6, 32, 32)), rng.integers(0, 2, 6)
    weight = rng.uniform(0.5, 2.0, 6)
    probs, cache = numpy_net.forward(params, x)
    grads = numpy_net.backward(params, cache, probs, y, weight)
    step = 1e-6
    for key, value in params.items():
        assert grads[key].shape == value.shape
        for _ in range(8):
            index = tuple(rng.integers(0, s) for s in value.shape)
            original = value[index]
            value[index] = original + step
            plus = numpy_net.loss(numpy_net.forward(params, x)[0], y, weight)
            value[index] = original - step
            minus = numpy_net.loss(numpy_net.forward(params, x)[0], y, weight)
            value[index] = original
            numeric = (plus - minus) / (2 * step)
            assert abs(numeric - grads[key][index]) <= 1e-6 + 1e-4 * abs(numeric), (key, index)


def test_onnx_graph_matches_numpy_forward(tmp_path):
    onnx = pytest.importorskip("onnx", reason="needs the onnx package (dev or export extra)")
    params = {k: v.astype(np.float32) for k, v in numpy_net.init(3).items()}
    params["filter_bias"] += 0.05
    model = numpy_net.to_onnx(params)
    onnx.checker.check_model(model, full_check=True)
    path = tmp_path / "net.onnx"
    path.write_bytes(model.SerializeToString())
    x = np.random.default_rng(4).random((17, 32, 32), dtype=np.float32)
    expected, _ = numpy_net.forward(params, x)
    got = OnnxModel(path).run(x[:, None])[0]
    assert np.abs(got - expected).max() <= 1e-5


def test_training_learns_a_separable_problem():
    """Noisy patches against smooth ones: loss must fall and accuracy rise well above chance."""
    rng = np.random.default_rng(5)
    smooth = np.cumsum(rng.normal(0, 0.02, (200, 32, 32)), axis=2) + 0.3
    noisy = smooth + rng.normal(0, 0.3, smooth.shape)
    x = np.concatenate([smooth, noisy]).astype(np.float32)
    y = np.r_[np.zeros(200, int), np.ones(200, int)]
    params = {k: v.astype(np.float32) for k, v in numpy_net.init(6).items()}
    optimizer = numpy_net.Momentum(params, 0.05)
    first = numpy_net.loss(numpy_net.forward(params, x)[0], y)
    for _ in range(5):
        for batch in np.array_split(rng.permutation(400), 20):
            probs, cache = numpy_net.forward(params, x[batch])
            optimizer.step(params, numpy_net.backward(params, cache, probs, y[batch]))
    probs, _ = numpy_net.forward(params, x)
    assert numpy_net.loss(probs, y) < first / 2
    assert (probs.argmax(axis=1) == y).mean() >= 0.95


@needs_data
def test_shipped_onnx_matches_its_numpy_weights_on_real_patches():
    params = dict(np.load(PLUGIN / "weights.npz"))
    item = next(i for i in data.casia() if i["split"] == "validation" and i["label"] == 1)
    rgb, _ = data.casia_image(item)
    patches = tiles(patch_input(rgb)).reshape(-1, 32, 32).astype(np.float32)
    expected, _ = numpy_net.forward(params, patches)
    got = OnnxModel(PLUGIN / "model.onnx").run(patches[:, None])[0]
    assert np.abs(got - expected).max() <= 1e-5


@needs_data
def test_patchnet_separates_casia_validation_images_and_maps_patches():
    detector = ElaPatchNet()
    detector.load()
    val = [i for i in data.casia() if i["split"] == "validation"]
    sample = [
        (i["path"], i["label"]) for y in (0, 1) for i in [v for v in val if v["label"] == y][:40]
    ]
    metrics = evaluate(sample, [detector])["ela-patchnet"]
    assert metrics.n_fake == metrics.n_real == 40
    assert metrics.roc_auc >= 0.65, metrics  # see MODEL_CARD.md for the full split
    grey = patch_input(data.casia_image(val[0])[0])
    assert detector.score(grey).shape == (grey.shape[0] // 32, grey.shape[1] // 32)
