"""Stable Diffusion's invisible watermarks (plugins/provenance/watermark.py), read back from
pictures marked in the test by the reference encoder: invisible-watermark's own `dwtDct` code
(`imwatermark/maxDct.py`, loaded from the installed package by path, because the package's
`__init__` imports torch, which that method never uses; installed with `pip install --no-deps`,
as the README's test command does)."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scanner.imaging import Sample, decode
from scanner_plugins.provenance import Provenance
from scanner_plugins.provenance.watermark import MESSAGES, find_watermarks, max_errors

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PHOTO = DATA / "camera_photos" / "real" / "Canon_IXUS.jpg"
# The three messages the reference pipelines embed, each in the channel order it used.
EMBEDDED = [m for m in MESSAGES if m.name != "SDXL (Stability's generative-models)"]


def reference_encoder():
    spec = importlib.util.find_spec("imwatermark")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("invisible-watermark is not installed (pip install --no-deps, see README)")
    path = Path(next(iter(spec.submodule_search_locations))) / "maxDct.py"
    module_spec = importlib.util.spec_from_file_location("reference_max_dct", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.EmbedMaxDct


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A real photo at a generator's size (512x512), as the pipelines mark their outputs."""
    if not PHOTO.exists():
        pytest.skip(f"{PHOTO} is missing (../shared/data)")
    rgb = Image.open(PHOTO).convert("RGB")
    scale = 512 / min(rgb.size)
    size = (round(rgb.width * scale), round(rgb.height * scale))
    return rgb.resize(size, Image.Resampling.LANCZOS).crop((0, 0, 512, 512))


def marked(photo: Image.Image, message) -> Image.Image:
    """The photo as the pipeline that embeds `message` would save it."""
    encoder = reference_encoder()(list(message.bits), wmLen=len(message.bits))
    array = np.asarray(photo)
    if message.order == "BGR":  # SD 1.x/2.x: RGB -> BGR, encode, back to RGB
        array = encoder.encode(np.ascontiguousarray(array[..., ::-1]))[..., ::-1]
    else:  # diffusers' SDXL hands the encoder its RGB array
        array = encoder.encode(array.copy())
    return Image.fromarray(np.ascontiguousarray(array))


def saved(image: Image.Image, fmt: str, **options) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return decode(buffer.getvalue())[0]


@pytest.mark.parametrize("message", EMBEDDED, ids=lambda m: m.text)
@pytest.mark.parametrize(
    "fmt, options",
    [("PNG", {}), ("JPEG", {"quality": 90, "subsampling": 0})],
    ids=["png", "jpeg-q90-4:4:4"],
)
def test_each_watermark_is_read_back_as_its_own_message(photo, message, fmt, options):
    found = find_watermarks(saved(marked(photo, message), fmt, **options))
    assert len(found) == 1 and f"'{message.text}' of {message.name}" in found[0], found


@pytest.mark.parametrize("message", EMBEDDED, ids=lambda m: m.text)
def test_chroma_subsampling_erases_the_mark_and_nothing_false_is_claimed(photo, message):
    # Pillow's JPEG default (4:2:0) halves the U channel the mark lives in: the reference
    # decoder loses it too. What matters is that nothing else is claimed instead.
    assert find_watermarks(saved(marked(photo, message), "JPEG", quality=90)) == []


def test_clean_pictures_carry_no_watermark(photo):
    rng = np.random.default_rng(0)
    flat = Image.new("RGB", (512, 512), (128, 128, 128))  # reads as all ones
    noise = Image.fromarray(rng.integers(0, 256, (512, 768, 3), dtype=np.uint8))
    gradient = Image.fromarray(
        np.broadcast_to(np.linspace(0, 255, 640, dtype=np.uint8)[None, :, None], (480, 640, 3))
    )
    strip = Image.new("RGB", (100_000, 1))  # enough pixels, not one block row
    for picture in (flat, noise, gradient, photo, saved(photo, "PNG"), strip):
        assert find_watermarks(picture) == []


def test_a_near_exact_match_means_less_than_one_chance_in_ten_million():
    assert [max_errors(n) for n in (32, 48, 136)] == [1, 6, 37]
    assert max_errors(8) == -1  # too short a message can never count


def test_the_provenance_detector_labels_a_marked_picture_fake(photo):
    buffer = io.BytesIO()
    marked(photo, EMBEDDED[1]).save(buffer, "PNG")
    data = buffer.getvalue()
    rgb, fmt = decode(data)
    detector = Provenance()
    detector.load()
    result = detector.predict([Sample("x.png", "", data, rgb, fmt)])[0]
    assert result.label == "fake" and "'SDV2'" in result.reason, result
