"""One way to run an ONNX model inside a detector: CPU session, thread limits, model hash.

Any plugin, built-in or third-party, may use it; nothing here is private to the core.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort

from scanner.detectors import Detector


def _threads() -> int:
    # On a small machine several detectors each spawning one thread per core fight each other.
    raw = os.environ.get("SCANNER_ONNX_THREADS", "")
    return int(raw) if raw.isdigit() else 0  # 0 = onnxruntime's own choice


class OnnxModel:
    """An onnxruntime session over a model file (or its bytes), with the model's SHA-256.

    The session is made on first use in each process: detectors are loaded in the scanning
    process and sent to worker processes (scanner/workers.py); a session cannot be sent, and
    one made before a fork() hangs in the child."""

    def __init__(self, model: str | Path | bytes):
        self.data = model if isinstance(model, bytes) else Path(model).read_bytes()
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        self._session: ort.InferenceSession | None = None
        self._pid = 0
        # No session yet: the scanning process never runs the model when workers do.

    @property
    def session(self) -> ort.InferenceSession:
        if self._session is None or self._pid != os.getpid():
            options = ort.SessionOptions()
            options.intra_op_num_threads = _threads()
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            self._session = ort.InferenceSession(
                self.data, options, providers=["CPUExecutionProvider"]
            )
            self._pid = os.getpid()
        return self._session

    def __getstate__(self) -> dict:
        # Sent to worker processes without its session: each worker makes its own.
        return self.__dict__ | {"_session": None, "_pid": 0}

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """All outputs of the model for one input batch."""
        session = self.session
        return session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(batch)})


class OnnxDetector(Detector):
    """A Detector backed by `model.onnx` in `model_dir`, with a `model.json` beside it that
    holds at least its `threshold` (chosen when the model was trained) and is kept as `meta`."""

    model_dir: ClassVar[Path]

    def load(self) -> None:
        self.meta: dict[str, Any] = json.loads((self.model_dir / "model.json").read_text())
        self.threshold = self.meta["threshold"]
        self.model = OnnxModel(self.model_dir / "model.onnx")

    @property
    def model_hash(self) -> str:
        return self.model.sha256
