"""Face blend: finds the blending boundary that face swaps and face composites leave, and faces
generated outright. EfficientNet-Lite0 (ImageNet weights) fine-tuned by the project on real
faces and self-blended copies of them (Shiohara & Yamasaki 2022: a real face blended with an
altered copy of itself), with a second head trained on StyleGAN2 faces
(export/train_face_blend.py). Each face found is cropped at SIDE pixels; the image's score is
its most suspicious face's larger head. Not applicable without a face."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from scanner.detectors import Result
from scanner.faces import aligned_face, crop_face, find_marked_faces
from scanner.onnx import OnnxDetector

HERE = Path(__file__).parent
SIDE = 224  # EfficientNet-Lite0's ImageNet size; model.json's "side" when trained at another
REDUCING_GAP = 3.0  # Pillow: a box reduction by int(shrink / 3) first, when that is 2 or more


def network_input(face: Image.Image, side: int = SIDE) -> np.ndarray:
    """(side, side, 3) float32 RGB in 0..255 of a face crop; scaling is inside the network.
    Training calls this too."""
    if face.size != (side, side):
        face = face.resize((side, side), Image.Resampling.BILINEAR)
    return np.asarray(face, dtype=np.float32)


class FaceBlend(OnnxDetector):
    name = "face-blend"
    # 1.2.1: a face crop six or more times the network's side box-reduced first (faster; scores
    # of such large faces move a little). 1.2.0: trained on composites too; 1.1.0: faces found
    # by MTCNN.
    version = "1.2.1"
    model_dir = HERE
    needs = frozenset({"faces"})
    threshold = 0.5  # replaced in load() by model.json's, chosen on held-out real faces
    description = "Face swaps, composites and generated faces (self-blended training), per face."
    batch_size = 8
    # Off by default: its blend head has no skill on Photoshop face composites it never saw
    # (issue 12's bar: ROC AUC >= 0.80 on faces_ciplab; MODEL_CARD.md gives the numbers).
    enabled_by_default = False

    def load(self) -> None:
        super().load()
        # The side the network was trained at: a blend boundary is a few pixels wide, so the
        # scale the network learnt it at is the scale it must be shown.
        self.side = int(self.meta.get("side", SIDE))
        # A model trained on aligned faces (`train_face_blend --aligned`) names the landmark
        # places it aligned them to (shares of the crop's side): every face it sees must be.
        self.template = self.meta.get("template")

    def face_crop(self, sample, face) -> Image.Image:
        """The crop of `face` this network was trained on: aligned by its landmarks when the
        model was (found in the crop itself when it is passed whole), else the box's square."""
        if self.template is not None:
            landmarks = face.landmarks
            if landmarks is None:  # --face-crops: the picture is the face
                found = find_marked_faces(sample.rgb)
                landmarks = found[0][1] if found else None
            if landmarks is not None:
                return aligned_face(sample.rgb, landmarks, self.template, self.side)
        # Its own crop, smoothly resized: the nearest-neighbour crop MesoNet is fed would add
        # jagged edges of its own to the blend boundary this network looks for. A crop six or
        # more times the network's side (a face in a phone photo) is box-reduced by a whole
        # factor first (Pillow's reducing_gap): 4 ms instead of 10 for a 1,900 px crop of a
        # 12 MP portrait; smaller crops (every face set's) are resized exactly as before.
        return crop_face(
            sample.rgb, face.box, self.side, Image.Resampling.BILINEAR, reducing_gap=REDUCING_GAP
        )

    def predict(self, batch):
        faces = [sample.faces() for sample in batch]
        crops = [
            network_input(self.face_crop(sample, face), self.side)
            for sample, found in zip(batch, faces, strict=True)
            for face in found
        ]
        outputs = {}
        if crops:
            names = [o.name for o in self.model.session.get_outputs()]
            outputs = dict(zip(names, self.model.run(np.stack(crops)), strict=True))
        index = 0
        results = []
        for found in faces:
            if not found:
                results.append(Result.not_applicable("no face found"))
                continue
            per_face, scores = [], []
            for face in found:
                blend = float(outputs["blend"][index, 0])
                generated = float(outputs["generated"][index, 0])
                per_face.append(
                    {
                        "box": list(face.box),
                        "score": round(max(blend, generated), 4),
                        "blend": round(blend, 4),
                        "generated": round(generated, 4),
                    }
                )
                scores.append(max(blend, generated))
                index += 1
            score = max(scores)
            results.append(Result.from_score(score, self.threshold, details={"faces": per_face}))
        return results
