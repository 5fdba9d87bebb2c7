"""Meso-4 and MesoInception-4 (Afchar et al. 2018): deepfake / face-manipulation detectors that
look at each face found in the image. The shipped weights are the project's own, trained from
scratch (see MODEL_CARD.md). A converted model, such as the authors' weights turned into ONNX
by `python -m export.mesonet_authors`, replaces them through SCANNER_MESO4_MODEL or
SCANNER_MESOINCEPTION4_MODEL; its hash is then recorded with every verdict."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from scanner.detectors import Detector, Result
from scanner.onnx import OnnxModel

HERE = Path(__file__).parent


class _Meso(Detector):
    needs = frozenset({"faces"})
    batch_size = 16
    # Off by default since 1.1.0: once the scan's face finder finds the faces in genuine camera
    # photos (MTCNN), meso4 labels 7 and mesoinception4 6 of the 92 genuine photos in the
    # shared data fake, a third of the 20 with a face (MODEL_CARD.md; the rule is 2%).
    enabled_by_default = False
    model_file: str
    env_var: str

    def load(self) -> None:
        # Chosen on the training split by export/train_meso.py. A custom model keeps it unless
        # it comes with its own: <model>.json beside it (the authors' models: 0.5).
        custom = os.environ.get(self.env_var)
        meta = Path(custom).with_suffix(".json") if custom else HERE / f"{self.name}.json"
        self.threshold = json.loads(meta.read_text())["threshold"] if meta.exists() else 0.5
        self.model = OnnxModel(custom or HERE / self.model_file)
        if custom:  # another model: keep its verdicts apart from the shipped one's
            self.version = f"{type(self).version}+{self.model.sha256[:12]}"

    @property
    def model_hash(self) -> str:
        return self.model.sha256

    def predict(self, batch):
        faces = [sample.faces() for sample in batch]
        crops = [np.asarray(face.crop, dtype=np.float32) / 255.0 for f in faces for face in f]
        scores = iter(self.model.run(np.stack(crops))[0][:, 0] if crops else [])
        results = []
        for found in faces:
            if not found:
                results.append(Result.not_applicable("no face found"))
                continue
            per_face = [float(next(scores)) for _ in found]
            details = {
                "faces": [
                    {"box": list(f.box), "score": round(s, 4)}
                    for f, s in zip(found, per_face, strict=True)
                ]
            }
            results.append(Result.from_score(max(per_face), self.threshold, details=details))
        return results


class Meso4(_Meso):
    name = "meso4"
    version = "1.1.1"  # 1.1.1: faster face search shrink (boxes in large photos move a little)
    model_file = "meso4.onnx"
    env_var = "SCANNER_MESO4_MODEL"
    description = "Meso-4 on each face (largest score wins); n/a without a face."


class MesoInception4(_Meso):
    name = "mesoinception4"
    version = "1.1.1"  # 1.1.1: faster face search shrink (boxes in large photos move a little)
    model_file = "mesoinception4.onnx"
    env_var = "SCANNER_MESOINCEPTION4_MODEL"
    description = "MesoInception-4 on each face (largest score wins); n/a without a face."
