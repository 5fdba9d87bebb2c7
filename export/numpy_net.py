"""The seed's cross-entropy network, written from scratch in NumPy: one 3x3 convolution with 8
filters, 2x2 max-pooling, and a softmax layer, with forward and backward passes by hand and a
cross-entropy loss. `to_onnx` writes the same network as an ONNX graph with the onnx package.

Shapes: input (N, 32, 32) patches; convolution (valid) -> (N, 30, 30, 8); pooling ->
(N, 15, 15, 8); flattened in that order (h, w, filter) -> 1800 -> softmax over 2 classes
(0 authentic, 1 tampered). 3,610 parameters."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

PATCH = 32
FILTERS = 8
POOLED = (PATCH - 2) // 2  # 15
FEATURES = POOLED * POOLED * FILTERS  # 1800


def init(seed: int) -> dict[str, np.ndarray]:
    """Filters as the seed scaled them (/9); softmax weights by input count (/features)."""
    rng = np.random.default_rng(seed)
    return {
        "filters": rng.standard_normal((FILTERS, 3, 3)) / 9,
        "filter_bias": np.zeros(FILTERS),
        "weights": rng.standard_normal((FEATURES, 2)) / FEATURES,
        "bias": np.zeros(2),
    }


def forward(params: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, dict]:
    """Class probabilities (N, 2), and what backward() needs."""
    windows = sliding_window_view(x, (3, 3), axis=(1, 2))  # (N, 30, 30, 3, 3), no copy
    conv = np.tensordot(windows, params["filters"], axes=([3, 4], [1, 2])) + params["filter_bias"]
    n = len(x)
    blocks = conv.reshape(n, POOLED, 2, POOLED, 2, FILTERS).transpose(0, 1, 3, 5, 2, 4)
    blocks = blocks.reshape(n, POOLED, POOLED, FILTERS, 4)
    winner = blocks.argmax(axis=-1)  # which of the 4 pixels each pooled value came from
    pooled = np.take_along_axis(blocks, winner[..., None], axis=-1)[..., 0]
    flat = pooled.reshape(n, FEATURES)
    logits = flat @ params["weights"] + params["bias"]
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs, {"windows": windows, "winner": winner, "flat": flat}


def loss(probs: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> float:
    """Mean cross-entropy, optionally weighted per example."""
    nll = -np.log(probs[np.arange(len(y)), y] + 1e-12)
    return float(np.average(nll, weights=weight))


def backward(
    params: dict[str, np.ndarray],
    cache: dict,
    probs: np.ndarray,
    y: np.ndarray,
    weight: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Gradients of loss() with respect to every parameter."""
    n = len(y)
    weight = np.ones(n) if weight is None else weight
    d_logits = probs.copy()
    d_logits[np.arange(n), y] -= 1
    d_logits *= (weight / weight.sum())[:, None]
    grads = {"weights": cache["flat"].T @ d_logits, "bias": d_logits.sum(axis=0)}
    d_pooled = (d_logits @ params["weights"].T).reshape(n, POOLED, POOLED, FILTERS)
    # Only the pixel that won each 2x2 pool receives the gradient.
    d_blocks = np.zeros((n, POOLED, POOLED, FILTERS, 4))
    np.put_along_axis(d_blocks, cache["winner"][..., None], d_pooled[..., None], axis=-1)
    d_conv = d_blocks.reshape(n, POOLED, POOLED, FILTERS, 2, 2).transpose(0, 1, 4, 2, 5, 3)
    d_conv = d_conv.reshape(n, 2 * POOLED, 2 * POOLED, FILTERS)
    grads["filters"] = np.tensordot(d_conv, cache["windows"], axes=([0, 1, 2], [0, 1, 2]))
    grads["filter_bias"] = d_conv.sum(axis=(0, 1, 2))
    return grads


class Momentum:
    """SGD with momentum: the seed trained with plain SGD; momentum only makes it converge in
    fewer epochs on 100k patches."""

    def __init__(self, params: dict[str, np.ndarray], rate: float, momentum: float = 0.9):
        self.rate, self.momentum = rate, momentum
        self.velocity = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        for key, grad in grads.items():
            self.velocity[key] = self.momentum * self.velocity[key] - self.rate * grad
            params[key] += self.velocity[key]


def to_onnx(params: dict[str, np.ndarray], opset: int = 17):
    """The network as an ONNX model: input `patches` (N, 1, 32, 32) float32, output
    `probabilities` (N, 2). NCHW inside; transposed to (h, w, filter) before flattening so that
    the softmax weights are used exactly as trained."""
    from onnx import TensorProto, helper, numpy_helper

    def constant(name, value):
        return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)

    initializers = [
        constant("filters", params["filters"][:, None]),
        constant("filter_bias", params["filter_bias"]),
        constant("weights", params["weights"]),
        constant("bias", params["bias"]),
    ]
    nodes = [
        helper.make_node("Conv", ["patches", "filters", "filter_bias"], ["conv"]),
        helper.make_node("MaxPool", ["conv"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Transpose", ["pooled"], ["hwf"], perm=[0, 2, 3, 1]),
        helper.make_node("Flatten", ["hwf"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "weights"], ["product"]),
        helper.make_node("Add", ["product", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "cross_entropy_patch_net",
        [helper.make_tensor_value_info("patches", TensorProto.FLOAT, ["N", 1, PATCH, PATCH])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8  # what onnxruntime 1.31 reads for opset 17
    return model
