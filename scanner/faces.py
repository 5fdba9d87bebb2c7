"""The face view: where a scan looks for faces in a decoded picture, and the crops of them
that face detectors (MesoNet, face-blend) are given. The finder itself, MTCNN, is
scanner/face_finder.py; this module decides the copy it searches and what it keeps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from scanner import face_finder

# Face finding: MTCNN (scanner/face_finder.py) on an RGB copy whose longest side is at most
# FACE_SEARCH_SIDE. Measured on every face set in ../shared/data, both classes (`python -m
# export.evaluate_models faces`; README): 97.2-99.8% of face crops found, against 76.1-99.6%
# for the OpenCV Haar cascade this replaced, at about its cost.
FACE_SEARCH_SIDE = 400
FACE_MIN_SIDE = 40  # smallest face, in pixels of the original image
# ... and in pixels of the search copy (MTCNN's usual 20; the Haar cascade searched from 24): the
# first pyramid level is the copy times 12 / this, the bulk of the finder's cost.
FACE_MIN_SEARCH_SIDE = 20
# The authors' last-stage threshold (0.7) also finds faces in butterflies and church towers;
# at 0.9 none of those remain and recall on the face sets drops by at most 1.5 points.
FACE_MIN_PROBABILITY = 0.9
# A face cut by the picture's edge (a tight portrait crop) is found once the copy is padded by
# repeating its edge pixels: 23 of 32 missed StyleGAN2-set portraits at 10% of the longer side.
FACE_SEARCH_PAD = 0.1
FACE_MARGIN = 1.3  # crop side / detected box side, as the MesoNet authors crop
FACE_CROP_SIDE = 256


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # left, top, width, height in the (EXIF-rotated) image
    crop: Image.Image  # FACE_CROP_SIDE square RGB


def find_faces(rgb: Image.Image) -> list[tuple[int, int, int, int]]:
    """Face boxes (left, top, width, height) in the image's pixels, largest first."""
    scale = min(1.0, FACE_SEARCH_SIDE / max(rgb.size))
    small = rgb
    if scale < 1.0:  # shrunk before anything else: a 12 MP copy alone costs 27 ms
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        # A box reduction by the whole integer factor, then bilinear over less than 2x: 7 ms
        # for a 12 MP photo against 18 ms with reducing_gap 3, the boxes within a few pixels.
        # The face sets' crops (at most 1.5x the search side) are shrunk by bilinear alone.
        small = small.resize(size, Image.Resampling.BILINEAR, reducing_gap=1.0)
    small = small.convert("RGB")
    pad = round(FACE_SEARCH_PAD * max(small.size))
    pixels = np.pad(np.asarray(small), ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    found = face_finder.detect(pixels, max(FACE_MIN_SEARCH_SIDE, FACE_MIN_SIDE * scale))
    boxes = []
    for x1, y1, x2, y2, probability in found:
        if probability < FACE_MIN_PROBABILITY:
            continue
        left, top = max(0.0, (x1 - pad) / scale), max(0.0, (y1 - pad) / scale)
        right, bottom = min(rgb.width, (x2 - pad) / scale), min(rgb.height, (y2 - pad) / scale)
        # The box can come out smaller than the pyramid was built for: too small to judge.
        if max(right - left, bottom - top) >= FACE_MIN_SIDE:
            boxes.append((round(left), round(top), round(right - left), round(bottom - top)))
    return sorted(boxes, key=lambda b: -b[2] * b[3])


def crop_face(
    rgb: Image.Image,
    box: tuple[int, int, int, int] | None = None,
    size: int = FACE_CROP_SIDE,
    resample: Image.Resampling = Image.Resampling.NEAREST,
) -> Image.Image:
    """A square crop FACE_MARGIN times the box around its centre (clipped to the image), or the
    whole image when `box` is None, resized to `size` (by default nearest, as MesoNet was fed)."""
    if box is not None:
        left, top, width, height = box
        side = max(width, height) * FACE_MARGIN
        cx, cy = left + width / 2, top + height / 2
        rgb = rgb.crop(
            (
                max(0, round(cx - side / 2)),
                max(0, round(cy - side / 2)),
                min(rgb.width, round(cx + side / 2)),
                min(rgb.height, round(cy + side / 2)),
            )
        )
    return rgb.resize((size, size), resample)
