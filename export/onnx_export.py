"""Keras -> ONNX with tf2onnx, the parity check, and weights as .npz (not HDF5, so that our own
weights can never be mistaken for third-party files)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import numpy as np
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

OPSET = 17
PARITY_TOLERANCE = 1e-5


class ParityError(AssertionError):
    pass


def to_onnx(model: keras.Model, path: str | Path | None = None) -> bytes:
    """The model as ONNX bytes (batch dimension free; spatial ones as the model declares)."""
    shape = (None, *model.inputs[0].shape[1:])
    spec = [tf.TensorSpec(shape, tf.float32, name="input")]
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET)
    data = proto.SerializeToString()
    if path:
        Path(path).write_bytes(data)
    return data


def run_onnx(data: bytes, batch: np.ndarray, names: list[str] | None = None) -> list[np.ndarray]:
    """The model's outputs on `batch`: all in graph order, or those named, in that order."""
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(names, {session.get_inputs()[0].name: batch.astype(np.float32)})


def check_parity(model: keras.Model, data: bytes, batch: np.ndarray) -> float:
    """Largest absolute difference between Keras and onnxruntime outputs on `batch`; raises
    ParityError above PARITY_TOLERANCE."""
    expected = model(batch.astype(np.float32), training=False)
    names = None
    if isinstance(expected, dict):  # outputs named as their layers: compare by name
        names, expected = list(expected), list(expected.values())
    expected = expected if isinstance(expected, (list, tuple)) else [expected]
    got = run_onnx(data, batch, names)
    if len(got) != len(expected):
        raise ParityError(f"Keras has {len(expected)} outputs, ONNX {len(got)}")
    worst = max(float(np.abs(np.asarray(e) - g).max()) for e, g in zip(expected, got, strict=True))
    if worst > PARITY_TOLERANCE:
        raise ParityError(f"Keras and ONNX differ by {worst:.2e} (> {PARITY_TOLERANCE:.0e})")
    return worst


def save_weights(model: keras.Model, path: str | Path) -> None:
    np.savez_compressed(path, **{w.path: w.numpy() for w in model.weights})


def load_weights(model: keras.Model, path: str | Path) -> keras.Model:
    stored = np.load(path)
    missing = [w.path for w in model.weights if w.path not in stored]
    if missing:
        raise KeyError(f"{path} lacks weights for {missing[:3]}")
    for w in model.weights:
        w.assign(stored[w.path])
    return model


def ship(
    model: keras.Model,
    out: Path,
    probe: np.ndarray,
    threshold: float,
    calibration_sets: list[str],
    flagged: dict[str, float],
    max_fpr: float,
    **extra,
) -> float:
    """Write a fine-tuned detector's folder: model.onnx (parity checked on `probe`),
    weights.npz, and model.json with the threshold (rounded up, so that no calibration real
    crosses it), what it was chosen on (the set name of each calibration image, the share of
    each set it flags) and `extra`. Returns the parity's largest difference."""
    out.mkdir(parents=True, exist_ok=True)
    worst = check_parity(model, to_onnx(model, out / "model.onnx"), probe)
    save_weights(model, out / "weights.npz")
    meta = {
        "threshold": math.ceil(threshold * 1e6) / 1e6,
        **extra,
        "parity_max_difference": worst,
        "threshold_chosen_on": {
            "max_fpr": max_fpr,
            "images": len(calibration_sets),
            "sets": {s: calibration_sets.count(s) for s in sorted(flagged)},
            "flagged": {k: round(v, 4) for k, v in flagged.items()},
        },
    }
    (out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    return worst
