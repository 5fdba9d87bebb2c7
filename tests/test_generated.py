"""The generated-image detector (plugins/generated): the shipped model on a small labelled
sample it never trained on, scanned through the pipeline, and the pictures it does not judge."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from export import data
from scanner.evaluate import roc_auc
from scanner.imaging import Sample, decode
from scanner_plugins.generated import CROPS, SIDE, Generated, crops, view

needs_data = pytest.mark.skipif(not data.DATA.is_dir(), reason=f"needs {data.DATA}")


@pytest.fixture(scope="module")
def generated():
    detector = Generated()
    detector.load()
    return detector


def sample(rgb: Image.Image, fmt: str = "JPEG", **options) -> Sample:
    buffer = io.BytesIO()
    rgb.save(buffer, fmt, **options)
    decoded, kind = decode(buffer.getvalue())
    return Sample("x", "", buffer.getvalue(), decoded, kind)


@needs_data
def test_it_separates_validation_pictures_both_re_saved_alike(generated):
    """SD 1.5 tiles and StyleGAN2 faces of the validation split against camera photos and
    validation real faces, every picture re-saved at JPEG q85: a margin, not a coin toss."""
    items = data.generated_images()
    fakes = [i for i in items if i["split"] == "validation" and i["label"] == 1]
    fakes = [i for i in fakes if i["family"] in ("sd15", "stylegan2")][::8]
    reals = [i for i in data.real_photos() if i["set"] == "camera_photos"][::3]
    reals += [i for i in items if i["split"] == "validation" and i["family"] == "stylegan2"][::8]
    reals = [i for i in reals if i["label"] == 0]
    pictures = [sample(data.load_rgb(i), quality=85) for i in fakes + reals]
    scores = [r.score for r in generated.predict(pictures)]
    assert roc_auc(scores, [1] * len(fakes) + [0] * len(reals)) >= 0.9
    real_scores = np.array(scores[len(fakes) :])
    assert np.mean(real_scores >= generated.threshold) <= 0.1


def test_a_picture_smaller_than_a_crop_is_not_judged(generated):
    result = generated.predict([sample(Image.new("RGB", (200, 300), (90, 120, 30)))])[0]
    assert result.label == "not-applicable" and "smaller than" in result.reason


def test_views_are_bounded_and_crops_cover_the_long_side():
    wide = Image.new("RGB", (4000, 1000))
    assert min(view(wide).size) == 512 and view(wide).width == 2048
    found = crops(Image.new("RGB", (900, 300)))
    assert len(found) == CROPS and all(c.shape == (SIDE, SIDE, 3) for c in found)
    assert crops(Image.new("RGB", (100, 100))) == []
