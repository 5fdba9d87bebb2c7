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


Box = tuple[int, int, int, int]  # left, top, width, height
Points = tuple[tuple[float, float], ...]  # MTCNN's five landmarks: eyes, nose, mouth corners


@dataclass(frozen=True)
class Face:
    box: Box  # in the (EXIF-rotated) image
    crop: Image.Image  # FACE_CROP_SIDE square RGB
    landmarks: Points | None = None  # in the image's pixels; None for a crop passed whole


def find_faces(rgb: Image.Image) -> list[Box]:
    """Face boxes (left, top, width, height) in the image's pixels, largest first."""
    return [box for box, _ in find_marked_faces(rgb)]


def find_marked_faces(rgb: Image.Image) -> list[tuple[Box, Points]]:
    """(box, five landmarks) of each face, in the image's pixels, largest first."""
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
    found, marks = face_finder.detect_with_landmarks(
        pixels, max(FACE_MIN_SEARCH_SIDE, FACE_MIN_SIDE * scale)
    )
    faces = []
    for (x1, y1, x2, y2, probability), points in zip(found, marks, strict=True):
        if probability < FACE_MIN_PROBABILITY:
            continue
        left, top = max(0.0, (x1 - pad) / scale), max(0.0, (y1 - pad) / scale)
        right, bottom = min(rgb.width, (x2 - pad) / scale), min(rgb.height, (y2 - pad) / scale)
        # The box can come out smaller than the pyramid was built for: too small to judge.
        if max(right - left, bottom - top) >= FACE_MIN_SIDE:
            box = (round(left), round(top), round(right - left), round(bottom - top))
            faces.append((box, tuple((float(x), float(y)) for x, y in (points - pad) / scale)))
    return sorted(faces, key=lambda face: -face[0][2] * face[0][3])


def crop_face(
    rgb: Image.Image,
    box: Box | None = None,
    size: int = FACE_CROP_SIDE,
    resample: Image.Resampling = Image.Resampling.NEAREST,
    reducing_gap: float | None = None,
) -> Image.Image:
    """A square crop FACE_MARGIN times the box around its centre (clipped to the image), or the
    whole image when `box` is None, resized to `size` (by default nearest, as MesoNet was fed;
    `reducing_gap` as Pillow's resize takes it)."""
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
    return rgb.resize((size, size), resample, reducing_gap=reducing_gap)


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 similarity transform (rotation, one scale, shift; no mirror) that brings the
    `source` points (n, 2) closest to `target` in least squares (Umeyama 1991)."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    source_mean, target_mean = source.mean(0), target.mean(0)
    src, dst = source - source_mean, target - target_mean
    u, sigma, vt = np.linalg.svd(dst.T @ src / len(source))
    sign = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ np.diag(sign) @ vt
    scale = float((sigma * sign).sum() / ((src**2).sum() / len(source)))
    shift = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, shift[:, None]])


def aligned_face(rgb: Image.Image, landmarks: Points, template, side: int) -> Image.Image:
    """A side x side face whose five landmarks are moved onto `template` (five points as
    shares of the side): every face at one pose and scale. The picture is first shrunk
    smoothly (bilinear with Pillow's antialiasing, as crop_face) to about the crop's scale, so
    that the rotation samples no more than 2 pixels per pixel; outside the picture its edge
    pixels repeat, as in the face search."""
    import cv2

    with np.errstate(divide="ignore", invalid="ignore"):
        transform = similarity(landmarks, np.asarray(template, np.float64) * side)
    scale = (
        float(np.sqrt(abs(np.linalg.det(transform[:, :2])))) if np.isfinite(transform).all() else 0
    )
    if not 1e-4 < scale < 1e4:  # landmarks all at one point: nothing to align by
        return crop_face(rgb, None, side, Image.Resampling.BILINEAR)
    # The part of the picture that lands in the crop, with a margin of a few output pixels.
    inverse = cv2.invertAffineTransform(transform)
    corners = np.array([[0, 0, 1], [side, 0, 1], [0, side, 1], [side, side, 1]], np.float64)
    area = corners @ inverse.T
    margin = 4 / scale
    left, top = np.floor(area.min(0) - margin).astype(int)
    right, bottom = np.ceil(area.max(0) + margin).astype(int)
    left, top = max(0, left), max(0, top)
    right, bottom = min(rgb.width, right), min(rgb.height, bottom)
    if right <= left or bottom <= top:  # the landmarks lie outside the picture
        return crop_face(rgb, None, side, Image.Resampling.BILINEAR)
    region = rgb.crop((left, top, right, bottom))
    shrink = min(1.0, 2 * scale)  # leave at most 2x for the rotation's bilinear sampling
    if shrink < 1.0:
        size = (max(1, round(region.width * shrink)), max(1, round(region.height * shrink)))
        region = region.resize(size, Image.Resampling.BILINEAR)
    # The transform from the shrunk region's pixels: undo its shrink and offset first.
    sx, sy = region.width / (right - left), region.height / (bottom - top)
    back = np.array([[1 / sx, 0, left], [0, 1 / sy, top], [0, 0, 1]], np.float64)
    warp = transform @ back
    pixels = cv2.warpAffine(
        np.asarray(region.convert("RGB")),
        warp,
        (side, side),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return Image.fromarray(pixels)
