"""Error Level Analysis: how much each pixel changes when the picture is saved once more as a
JPEG. What a scan stores (a grey map at a fixed scale) and what ELA detectors read (the raw
difference per channel) are both made here; scanner.imaging.Sample caches them per picture.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageChops


def ela_difference(rgb: Image.Image, quality: int) -> Image.Image:
    """The raw error level: |image - image re-saved as JPEG at `quality`|, per channel."""
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    resaved = Image.open(buffer)
    resaved.load()
    difference = ImageChops.difference(rgb, resaved)
    # A map of differences, not a photo: none of the photo's metadata goes with it (its RGB
    # ICC profile had been written into the stored grey PNGs, where PNG allows none).
    difference.info = {}
    return difference


def brighten(diff: Image.Image, max_diff: int | None = None) -> tuple[Image.Image, int]:
    """The seed's ELA display: `diff` scaled by 255 / (largest difference), so the brightest
    pixel is always 255. Returns (ELA image, largest raw difference)."""
    if max_diff is None:
        max_diff = largest_value(diff)
    if max_diff == 0:
        return diff, 0
    scale = 255.0 / max_diff
    lut = [min(255, int(value * scale)) for value in range(256)]
    return diff.point(lut * 3), max_diff


# The stored ELA image: raw difference x ELA_SCALE, clipped to 255. A fixed scale, as
# Forensically's "error scale" (default 20) uses, so that brightness means the same in every
# image; the seed's per-image stretch (255 / largest difference) made most ELA images nearly
# black (one bright edge pixel sets the scale) and made clean and edited images look alike.
ELA_SCALE = 20


# Rows per strip in largest_channel: its three bands and their maximum exist a strip at a time.
CHANNEL_STRIP = 512


def largest_channel(image: Image.Image) -> Image.Image:
    """One grey channel: per pixel, the largest of the RGB values (the stored grey ELA). Made in
    strips of rows, so that the three bands of a huge picture (500 MB for 169 megapixels)
    never exist whole beside the picture and its difference image."""
    grey = Image.new("L", image.size)
    for top in range(0, image.height, CHANNEL_STRIP):
        box = (0, top, image.width, min(image.height, top + CHANNEL_STRIP))
        red, green, blue = image.crop(box).split()
        grey.paste(ImageChops.lighter(ImageChops.lighter(red, green), blue), box)
    return grey


def scale_difference(diff: Image.Image, scale: int = ELA_SCALE) -> Image.Image:
    """`diff` multiplied by `scale`, clipped to 255: the ELA image people look at."""
    lut = [min(255, value * scale) for value in range(256)]
    return diff.point(lut * len(diff.getbands()))


def error_level(rgb: Image.Image, quality: int) -> tuple[Image.Image, int]:
    """Error Level Analysis as the seed computed it: (brightened ELA image, largest difference)."""
    return brighten(ela_difference(rgb, quality))


def largest_value(image: Image.Image) -> int:
    """The largest value in any band of an 8-bit image. One band: numpy's max over its pixels
    (1 ms on 12 megapixels, the histogram 14 ms); more: from the histogram, one pass without
    copying a band (half the time of getextrema's band by band on a 12-megapixel picture)."""
    if image.mode == "L":
        return int(np.asarray(image).max()) if image.width and image.height else 0
    counts = np.asarray(image.histogram()).reshape(-1, 256).sum(axis=0)
    found = np.flatnonzero(counts)
    return int(found[-1]) if len(found) else 0


# JPEG codes each 16x16 block of a picture (8x8 luma blocks, chroma halved both ways) on its
# own: a strip of rows that starts on a multiple of 16 is coded as those rows of the whole
# picture are. Decoding smooths chroma across neighbouring block rows, so each strip is saved
# with MARGIN rows more on either side (the smoothing reads one chroma row, two pixel rows,
# beyond each row) and those are thrown away: the strips give the very pixels the whole
# picture would (tests/test_imaging.py checks it on photos and odd sizes).
BLOCK_ROWS = 16
MARGIN = 16
STRIP_PIXELS = 4_000_000  # a strip's size: 12 MB of RGB, whatever the picture's width


def grey_error_level(rgb: Image.Image, quality: int) -> tuple[Image.Image, int]:
    """(largest_channel(ela_difference(rgb, quality)), its largest value), made a strip of rows
    at a time: the re-saved picture and the RGB difference, 3 bytes a pixel each (1 GB for a
    169-megapixel picture), never exist whole. What a scan stores needs only these two."""
    width, height = rgb.size
    rows = max(BLOCK_ROWS, STRIP_PIXELS // max(width, 1) // BLOCK_ROWS * BLOCK_ROWS)
    grey = Image.new("L", rgb.size)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        start, end = max(0, top - MARGIN), min(height, bottom + MARGIN)
        part = rgb.crop((0, start, width, end))
        difference = ela_difference(part, quality).crop((0, top - start, width, bottom - start))
        grey.paste(largest_channel(difference), (0, top))
    return grey, largest_value(grey)
