"""The frequency-spectrum detector of Durall et al. (2020) as one ONNX graph: 2-D DFT of a
256x256 grey crop, 20*log10 of the magnitude, azimuthal average into 128 rings, min-max
normalisation, then a logistic regression. `build()` writes the graph with the onnx package;
`reference_profile()` is the same computation in NumPy, which tests compare against.

Rings: the radius of frequency (u, v) is measured from the zero frequency without shifting the
spectrum (sqrt(min(u, 256-u)^2 + min(v, 256-v)^2)); ring k holds the radii in [k, k+1), and the
last ring also holds the corners beyond radius 127."""

from __future__ import annotations

import numpy as np

SIDE = 256
RINGS = SIDE // 2
EPS = 1e-16  # added to |F|^2 before the log; an all-flat crop then gives finite values


def ring_index() -> np.ndarray:
    """(SIDE * SIDE,) ring of every frequency, row-major."""
    f = np.minimum(np.arange(SIDE), SIDE - np.arange(SIDE))
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    return np.minimum(radius.astype(np.int64), RINGS - 1).ravel()


def reference_profile(grey: np.ndarray) -> np.ndarray:
    """(N, RINGS) min-max normalised azimuthal average of 20*log10|F|, in float64."""
    power = np.abs(np.fft.fft2(grey.astype(np.float64))) ** 2
    decibels = 10 * np.log10(power.reshape(len(grey), -1) + EPS)
    rings = ring_index()
    counts = np.bincount(rings, minlength=RINGS)
    profile = np.stack([np.bincount(rings, weights=d, minlength=RINGS) for d in decibels]) / counts
    low, high = profile.min(axis=1, keepdims=True), profile.max(axis=1, keepdims=True)
    return (profile - low) / np.maximum(high - low, 1e-12)


def build(classifier: dict[str, np.ndarray] | None = None, opset: int = 17):
    """The ONNX model. Input `grey` (N, 256, 256) float32 in 0..255. Outputs `profile`
    (N, 128), and with a `classifier` (the profile's `mean` and `scale` for standardising, and
    `layers`, a list of (weights, bias) with ReLU between them: one layer is a logistic
    regression, two a small dense network) also `score` (N, 1) = P(generated)."""
    from onnx import TensorProto, helper, numpy_helper

    rings = ring_index()
    counts = np.bincount(rings, minlength=RINGS).astype(np.float32)
    inits = [
        numpy_helper.from_array(rings[None].astype(np.int32), "ring_index"),
        numpy_helper.from_array(counts, "ring_counts"),
        numpy_helper.from_array(np.array([-1, SIDE * SIDE], np.int64), "flat_shape"),
        numpy_helper.from_array(np.array([RINGS], np.int64), "rings"),
        numpy_helper.from_array(np.array([3], np.int64), "last_axis"),
        numpy_helper.from_array(np.array(EPS, np.float32), "eps"),
        numpy_helper.from_array(np.array(10 / np.log(10), np.float32), "to_decibels"),
        numpy_helper.from_array(np.array(1e-12, np.float32), "tiny"),
    ]
    node = helper.make_node
    nodes = [
        node("Unsqueeze", ["grey", "last_axis"], ["real"]),  # (N, H, W, 1): a real signal
        node("DFT", ["real"], ["rows"], axis=1, onesided=0),
        node("DFT", ["rows"], ["spectrum"], axis=2, onesided=0),  # (N, H, W, 2): re, im
        node("ReduceSumSquare", ["spectrum"], ["power"], axes=[3], keepdims=0),
        node("Add", ["power", "eps"], ["power_eps"]),
        node("Log", ["power_eps"], ["log_power"]),
        node("Mul", ["log_power", "to_decibels"], ["decibels"]),
        node("Reshape", ["decibels", "flat_shape"], ["flat"]),
        # Sum per ring: scatter-add every frequency into its ring (no dense 65536x128 matrix).
        node("Shape", ["flat"], ["flat_dims"]),
        node("Expand", ["ring_index", "flat_dims"], ["ring_of"]),
        node("Shape", ["flat"], ["batch"], end=1),
        node("Concat", ["batch", "rings"], ["sums_shape"], axis=0),
        node("ConstantOfShape", ["sums_shape"], ["zeros"]),
        node("ScatterElements", ["zeros", "ring_of", "flat"], ["sums"], axis=1, reduction="add"),
        node("Div", ["sums", "ring_counts"], ["average"]),
        node("ReduceMin", ["average"], ["low"], axes=[1], keepdims=1),
        node("ReduceMax", ["average"], ["high"], axes=[1], keepdims=1),
        node("Sub", ["average", "low"], ["shifted"]),
        node("Sub", ["high", "low"], ["span"]),
        node("Max", ["span", "tiny"], ["safe_span"]),
        node("Div", ["shifted", "safe_span"], ["profile"]),
    ]
    outputs = [helper.make_tensor_value_info("profile", TensorProto.FLOAT, ["N", RINGS])]
    if classifier is not None:
        for key in ("mean", "scale"):
            inits.append(numpy_helper.from_array(classifier[key].astype(np.float32), key))
        nodes += [
            node("Sub", ["profile", "mean"], ["centred"]),
            node("Div", ["centred", "scale"], ["layer0"]),
        ]
        layers = classifier["layers"]
        for i, (weights, bias) in enumerate(layers):
            w, b = f"weights{i}", f"bias{i}"
            inits.append(numpy_helper.from_array(weights.astype(np.float32), w))
            inits.append(numpy_helper.from_array(bias.astype(np.float32), b))
            last = i == len(layers) - 1
            nodes += [
                node("MatMul", [f"layer{i}", w], [f"product{i}"]),
                node("Add", [f"product{i}", b], ["logit" if last else f"linear{i}"]),
            ]
            if not last:
                nodes.append(node("Relu", [f"linear{i}"], [f"layer{i + 1}"]))
        nodes.append(node("Sigmoid", ["logit"], ["score"]))
        outputs.insert(0, helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1]))
    graph = helper.make_graph(
        nodes,
        "durall_spectrum",
        [helper.make_tensor_value_info("grey", TensorProto.FLOAT, ["N", SIDE, SIDE])],
        outputs,
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 3000):
    """L2-regularised logistic regression on standardised features, by full-batch gradient
    descent (convex: the result does not depend on a seed)."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / scale
    w, b = np.zeros(z.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(z @ w + b)))
        w -= 0.5 * (z.T @ (p - y) / len(y) + l2 * w)
        b -= 0.5 * float((p - y).mean())
    return {"mean": mean, "scale": scale, "layers": [(w[:, None], np.array([b]))]}


def fit_dense(x, y, hidden: int, l2: float = 1e-3, steps: int = 300, seed: int = 0):
    """A small dense network (standardised profile -> `hidden` ReLU units -> sigmoid), trained
    by full-batch gradient descent on cross-entropy with L2; seeded initialisation."""
    rng = np.random.default_rng(seed)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / scale
    w1 = rng.normal(0, 1 / np.sqrt(z.shape[1]), (z.shape[1], hidden))
    b1, w2, b2 = np.zeros(hidden), rng.normal(0, 1 / np.sqrt(hidden), hidden), 0.0
    for _ in range(steps):
        h = np.maximum(z @ w1 + b1, 0)
        g = (1 / (1 + np.exp(-(h @ w2 + b2))) - y) / len(y)
        g_h = np.outer(g, w2) * (h > 0)
        w2 -= 0.5 * (h.T @ g + l2 * w2)
        b2 -= 0.5 * float(g.sum())
        w1 -= 0.5 * (z.T @ g_h + l2 * w1)
        b1 -= 0.5 * g_h.sum(axis=0)
    return {"mean": mean, "scale": scale, "layers": [(w1, b1), (w2[:, None], np.array([b2]))]}


def predict(classifier: dict, x: np.ndarray) -> np.ndarray:
    """P(generated) for profiles `x`, in NumPy (the ONNX graph computes the same)."""
    h = (x - classifier["mean"]) / classifier["scale"]
    for i, (weights, bias) in enumerate(classifier["layers"]):
        h = h @ weights + bias
        if i < len(classifier["layers"]) - 1:
            h = np.maximum(h, 0)
    return 1 / (1 + np.exp(-h[:, 0]))
