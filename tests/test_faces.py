"""The face-blend detector on real faces from ../shared/data and on faces edited in the test.
(No test asserts skill on faces_ciplab's Photoshop composites: it has none, MODEL_CARD.md.)"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from export import data
from export.self_blend import face_swap, self_blend
from export.training import jpeg_roundtrip
from scanner.config import Settings
from scanner.evaluate import evaluate
from scanner.imaging import Sample, find_faces
from scanner_plugins.face_blend import FaceBlend

needs_data = pytest.mark.skipif(not data.DATA.is_dir(), reason=f"needs {data.DATA}")


@pytest.fixture(scope="module")
def face_blend():
    detector = FaceBlend()
    detector.load()
    return detector


def score(detector, rgb: Image.Image, face_crops: bool = True):
    buffer = io.BytesIO()
    rgb.save(buffer, "PNG")
    sample = Sample("x.png", "", buffer.getvalue(), rgb, "PNG", face_crops=face_crops)
    return detector.predict([sample])[0]


def validation(set_name: str, label: int, n: int) -> list[dict]:
    items = [
        i for i in data.faces((set_name,)) if i["split"] == "validation" and i["label"] == label
    ]
    return items[:: max(1, len(items) // n)][:n]


@needs_data
def test_stylegan2_faces_are_separated_from_real_ones(face_blend):
    items = validation("faces_stylegan2", 0, 30) + validation("faces_stylegan2", 1, 30)
    m = evaluate([(i["path"], i["label"]) for i in items], [face_blend], Settings(face_crops=True))
    assert m[face_blend.name].roc_auc >= 0.9, m


@needs_data
def test_a_face_blended_in_the_test_scores_higher_than_its_source(face_blend):
    reals = validation("faces_ciplab", 0, 10) + validation("faces_stylegan2", 0, 10)
    rng = np.random.default_rng(7)
    higher = []
    for item, donor in zip(reals, reals[1:] + reals[:1], strict=True):
        real = Image.open(item["path"]).convert("RGB")
        before = score(face_blend, jpeg_roundtrip(real, 90)).score
        for edited in (
            self_blend(real, rng)[0],
            face_swap(real, Image.open(donor["path"]).convert("RGB"), rng),
        ):
            after = score(face_blend, jpeg_roundtrip(edited, 90)).score
            higher.append(after > before)
    assert np.mean(higher) >= 0.75, higher


def test_a_picture_without_a_face_is_not_applicable(face_blend):
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 255, 640)[None, :, None] * np.ones((480, 1, 3))
    noise = rng.normal(0, 8, (480, 640, 3))
    rgb = Image.fromarray(np.clip(gradient + noise, 0, 255).astype(np.uint8))
    result = score(face_blend, rgb, face_crops=False)
    assert result.label == "not-applicable" and result.score is None


@needs_data
def test_faces_found_in_a_whole_photo_carry_their_boxes(face_blend):
    face = Image.open(validation("faces_ciplab", 0, 1)[0]["path"]).convert("RGB")
    photo = Image.new("RGB", (1600, 1200), (70, 90, 110))
    photo.paste(face.resize((500, 500)), (700, 300))
    result = score(face_blend, photo, face_crops=False)
    assert result.score is not None
    (found,) = result.details["faces"]
    left, top, width, height = found["box"]
    assert 600 <= left + width / 2 <= 1300 and 300 <= top + height / 2 <= 800
    assert found["score"] == max(found["blend"], found["generated"])


@needs_data
def test_face_finding_recall_floor_on_real_face_crops():
    items = validation("faces_ciplab", 0, 20) + validation("faces_stylegan2", 0, 20)
    found = [bool(find_faces(Image.open(i["path"]).convert("RGB"))) for i in items]
    assert np.mean(found) >= 0.6, found
