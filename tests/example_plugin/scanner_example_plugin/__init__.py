"""An example detector plugin: mean ELA brightness through a tiny ONNX graph.

Not a forgery detector. It shows the whole contract a plugin meets: a Detector subclass with a
name, version, needs and threshold; a model loaded once in load(); batches scored in predict();
a heatmap; and not-applicable results with a reason.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper
from PIL import Image

from scanner.detectors import Detector, Result
from scanner.onnx import OnnxModel

SIDE = 64
MIN_SIDE = 32
GRID = 8


def build_model(gain: float = 12.0, bias: float = 3.0) -> bytes:
    """sigmoid(gain * mean(x) - bias) over an (N, SIDE, SIDE, 3) batch in [0, 1]."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, SIDE, SIDE, 3])
    y = helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])
    nodes = [
        helper.make_node("ReduceMean", ["input", "axes"], ["mean"], keepdims=0),
        helper.make_node("Unsqueeze", ["mean", "one"], ["mean1"]),
        helper.make_node("Mul", ["mean1", "gain"], ["scaled"]),
        helper.make_node("Sub", ["scaled", "bias"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["score"]),
    ]
    constants = [
        helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3]),
        helper.make_tensor("one", TensorProto.INT64, [1], [1]),
        helper.make_tensor("gain", TensorProto.FLOAT, [], [gain]),
        helper.make_tensor("bias", TensorProto.FLOAT, [], [bias]),
    ]
    graph = helper.make_graph(nodes, "ela_brightness", [x], [y], initializer=constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


class ElaBrightness(Detector):
    name = "example-ela-brightness"
    version = "0.1.0"
    needs = frozenset({"ela"})
    threshold = 0.5
    description = "Example plugin: a logistic function of mean ELA brightness (not a forgery test)."
    batch_size = 8

    def load(self) -> None:
        self.model = OnnxModel(build_model())

    @property
    def model_hash(self) -> str:
        return self.model.sha256

    def predict(self, batch):
        results: list[Result | None] = [None] * len(batch)
        arrays, slots = [], []
        for index, sample in enumerate(batch):
            if min(sample.size) < MIN_SIDE:
                results[index] = Result.not_applicable(f"smaller than {MIN_SIDE} pixels")
                continue
            ela = sample.ela()
            arrays.append(np.asarray(ela.resize((SIDE, SIDE), Image.Resampling.BILINEAR)))
            slots.append(index)
        if arrays:
            batch_array = np.stack(arrays).astype(np.float32) / 255.0
            scores = self.model.run(batch_array)[0][:, 0]
            for index, array, score in zip(slots, batch_array, scores, strict=True):
                heatmap = array.mean(axis=2).reshape(GRID, SIDE // GRID, GRID, SIDE // GRID)
                results[index] = Result.from_score(
                    float(score),
                    self.threshold,
                    details={"mean_ela": round(float(array.mean()), 5)},
                    heatmap=heatmap.mean(axis=(1, 3)),
                )
        return results
