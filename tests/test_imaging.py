import io

import numpy as np
import pytest
from conftest import jpeg_bytes, photo, spliced
from PIL import Image

from scanner import ela
from scanner.ela import error_level, largest_value
from scanner.imaging import ImageError, decode, heatmap_png, sniff, to_png


def test_sniff_knows_the_formats_it_decodes():
    assert sniff(jpeg_bytes(photo(0))[:16]) == "JPEG"
    buffer = io.BytesIO()
    photo(0).save(buffer, "WEBP")
    assert sniff(buffer.getvalue()[:16]) == "WEBP"
    assert sniff(b"hello world, not an image") is None


def test_decode_applies_exif_orientation():
    image = photo(1, size=(120, 60))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    rgb, fmt = decode(jpeg_bytes(image, exif=exif.tobytes()))
    assert fmt == "JPEG" and rgb.size == (60, 120) and rgb.mode == "RGB"


def test_decode_survives_malformed_exif():
    data = jpeg_bytes(photo(2), exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff garbage")
    rgb, _ = decode(data)
    assert rgb.size == (320, 240)


def _saved(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "fmt, mode, scale",
    [
        ("PNG", "I;16", 257),  # a 16-bit greyscale PNG
        ("TIFF", "I;16", 257),
        ("TIFF", "I", 257),  # 32-bit integers holding 16-bit values
        ("TIFF", "I", 1),  # ... or 8-bit ones
        ("TIFF", "F", 1 / 255),  # floats of 0..1
    ],
)
def test_decode_shows_deep_greys_as_a_viewer_does(fmt, mode, scale):
    """Pillow's own conversion clips 16-bit, 32-bit and float greys to 0..255: a 16-bit PNG
    became nearly all white, a float TIFF of 0..1 black. They decode like their 8-bit grey."""
    grey = np.asarray(photo(4).convert("L"))
    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
    deep = Image.fromarray(
        (grey.astype(np.float64) * scale).astype(dtype), mode if mode != "I;16" else None
    )
    data = _saved(deep, fmt)
    assert Image.open(io.BytesIO(data)).mode.startswith(mode[0])
    rgb, _ = decode(data)
    assert rgb.mode == "RGB"
    assert np.abs(np.asarray(rgb, np.int16) - grey[..., None]).max() <= 1


@pytest.mark.parametrize(
    "data, kind",
    [
        (jpeg_bytes(photo(3))[:3000], "truncated"),
        (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8, "corrupt"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt"),
    ],
)
def test_decode_errors_have_a_kind(data, kind):
    with pytest.raises(ImageError) as caught:
        decode(data)
    assert caught.value.kind == kind and str(caught.value)


def test_decompression_bomb_is_refused(bomb_bytes):
    with pytest.raises(ImageError) as caught:
        decode(bomb_bytes)
    assert caught.value.kind == "decompression-bomb"


def test_ela_is_scaled_to_full_brightness_and_lights_up_a_splice():
    rgb, _ = decode(spliced(3))
    ela, max_diff = error_level(rgb, 90)
    values = np.asarray(ela).max(axis=2).astype(np.float32)
    assert ela.size == rgb.size and max_diff > 0 and values.max() == 255
    # The pasted block (150..270 x 80..180) was compressed differently from its host.
    inside = values[80:180, 150:270].mean()
    outside = np.concatenate([values[:70].ravel(), values[190:].ravel()]).mean()
    assert inside > 1.3 * outside


@pytest.mark.parametrize(
    ("size", "quality"), [((320, 240), 90), ((333, 1601), 75), ((1000, 41), 95), ((64, 51), 90)]
)
def test_the_grey_ela_made_in_strips_is_the_whole_pictures(monkeypatch, size, quality):
    # A strip of 16-32 rows, so that every picture but the smallest is cut many times, on a
    # photo-like picture (smooth, JPEG-like) and on noise (whose chroma differs row to row).
    monkeypatch.setattr(ela, "STRIP_PIXELS", 16 * size[0] + 1)
    noise = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), np.uint8)
    for rgb in (decode(jpeg_bytes(photo(7, size=size), 85))[0], Image.fromarray(noise)):
        whole = ela.largest_channel(ela.ela_difference(rgb, quality))
        grey, largest = ela.grey_error_level(rgb, quality)
        assert np.array_equal(np.asarray(grey), np.asarray(whole))
        assert largest == ela.largest_value(whole) > 0


def test_a_samples_stored_ela_comes_from_the_difference_a_detector_read():
    from scanner.imaging import Sample

    rgb = decode(spliced(4))[0]
    strips = Sample("x.jpg", "0" * 64, b"", rgb, "JPEG")
    assert not strips._raw and strips.ela_max_diff() > 0 and not strips._raw  # no raw made
    read = Sample("x.jpg", "0" * 64, b"", rgb, "JPEG")
    raw = read.ela_difference()
    assert read.ela_grey_difference().tobytes() == strips.ela_grey_difference().tobytes()
    assert read.ela_difference() is raw and read.ela_max_diff() == strips.ela_max_diff()
    read.drop_ela_differences()
    assert not read._raw and not read._grey


def test_png_helpers_cap_size_and_validate_heatmaps():
    png = to_png(photo(4, size=(400, 100)), max_side=200)
    assert Image.open(io.BytesIO(png)).size == (200, 50)
    heat = Image.open(io.BytesIO(heatmap_png(np.array([[0.0, 1.0], [0.5, 2.0]]))))
    assert heat.mode == "L" and np.asarray(heat).ravel().tolist() == [0, 255, 128, 255]
    with pytest.raises(ValueError):
        heatmap_png(np.zeros((2, 2, 2)))


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, bool])
def test_integer_heatmaps_are_stored_as_their_probabilities_clipped(dtype):
    # Masks (copy-move's, at image resolution) skip the float copy: 0 or less is 0, 1 or
    # more is 255, as a float heatmap clipped to 0..1 would be.
    mask = np.array([[0, 1, 2], [-1, 0, 7]]).astype(dtype)
    heat = Image.open(io.BytesIO(heatmap_png(mask)))
    expected = np.clip(mask.astype(np.float32), 0, 1) * 255
    assert np.asarray(heat).tolist() == expected.astype(np.uint8).tolist()


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_largest_value_is_the_largest_in_any_band(mode):
    pixels = np.zeros((4, 5, 3), np.uint8)
    pixels[2, 3, 1] = 9
    pixels[1, 1, 2] = 4
    image = Image.fromarray(pixels).convert(mode) if mode == "L" else Image.fromarray(pixels)
    extrema = image.getextrema()
    bands = extrema if isinstance(extrema[0], tuple) else (extrema,)
    assert largest_value(image) == max(high for _low, high in bands) > 0
    assert largest_value(Image.new(mode, (3, 3))) == 0


def test_face_crops_mode_treats_the_whole_image_as_one_face():
    from scanner.faces import FACE_CROP_SIDE
    from scanner.imaging import Sample

    rgb = photo(5, size=(300, 200))
    sample = Sample("x.jpg", "0" * 64, b"", rgb, "JPEG", face_crops=True)
    (face,) = sample.faces()
    assert face.box == (0, 0, 300, 200) and face.crop.size == (FACE_CROP_SIDE, FACE_CROP_SIDE)
    assert sample.faces() is sample.faces()  # computed once, shared by every detector


def test_no_face_in_a_landscape_and_crop_margin():
    from scanner.faces import crop_face, find_faces

    assert find_faces(photo(6, size=(640, 480))) == []
    crop = crop_face(photo(7, size=(400, 400)), (100, 100, 100, 100))
    assert crop.size == (256, 256)
