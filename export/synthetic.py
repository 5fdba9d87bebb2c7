"""Synthetic splices whose two classes share one JPEG history.

CASIA v1's tampered and authentic photos were saved at different JPEG qualities, so a network
trained on them can score the file's quality instead of the tampering. Here every training pair
is made from one authentic photo (the host): the authentic sample is the host saved at a random
final quality; the tampered sample is the same host with a region pasted from another authentic
photo (the donor, re-compressed at its own quality and perhaps rescaled, placed off the 8x8
grid), saved at the same final quality. The only difference left between the two is the pasted
region's own history: the trace a tampering detector should find.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from export.training import jpeg_roundtrip


def region_mask(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """An 'L' mask of one random ellipse or polygon covering roughly 1-20% of the image."""
    w, h = size
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    rw, rh = rng.uniform(0.2, 0.5) * w, rng.uniform(0.2, 0.5) * h
    cx, cy = rng.uniform(rw / 2, w - rw / 2), rng.uniform(rh / 2, h - rh / 2)
    if rng.random() < 0.5:
        draw.ellipse([cx - rw / 2, cy - rh / 2, cx + rw / 2, cy + rh / 2], fill=255)
    else:
        angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(4, 9))))
        radius = rng.uniform(0.6, 1.0, len(angles))
        points = [
            (cx + r * rw / 2 * np.cos(a), cy + r * rh / 2 * np.sin(a))
            for a, r in zip(angles, radius, strict=True)
        ]
        draw.polygon(points, fill=255)
    return mask


def splice_pair(
    host: Image.Image, donor: Image.Image, rng: np.random.Generator, final: int | None = None
) -> tuple[Image.Image, Image.Image, np.ndarray]:
    """(authentic, tampered, mask as float32 0/1) at the host's size; both images have been
    through the same final JPEG save, at quality `final` when given (else a random 70-98)."""
    donor = jpeg_roundtrip(donor, int(rng.integers(50, 96)))
    if rng.random() < 0.5:
        scale = rng.uniform(0.7, 1.4)
        donor = donor.resize(
            (max(8, round(donor.width * scale)), max(8, round(donor.height * scale))),
            Image.Resampling.BICUBIC,
        )
    # Any offset, not a multiple of 8: a real paste rarely keeps the donor's JPEG grid.
    grow = max(host.width / donor.width, host.height / donor.height)
    if grow > 1:
        size = (int(np.ceil(donor.width * grow)), int(np.ceil(donor.height * grow)))
        donor = donor.resize(size, Image.Resampling.BICUBIC)
    dx = int(rng.integers(0, donor.width - host.width + 1))
    dy = int(rng.integers(0, donor.height - host.height + 1))
    patch = donor.crop((dx, dy, dx + host.width, dy + host.height))
    mask = region_mask(host.size, rng)
    soft = mask.filter(ImageFilter.GaussianBlur(1.0)) if rng.random() < 0.5 else mask
    tampered = Image.composite(patch, host, soft)
    drawn = int(rng.integers(70, 99))  # drawn either way: the same random stream after it
    final = drawn if final is None else final
    target = (np.asarray(mask) > 127).astype(np.float32)
    return jpeg_roundtrip(host, final), jpeg_roundtrip(tampered, final), target


def object_paste(
    host: Image.Image, source: Image.Image, mask: np.ndarray, rng: np.random.Generator
) -> tuple[Image.Image, np.ndarray] | None:
    """(host with the region `mask` marks in `source` pasted at a random place, the pasted
    region as float32 0/1), or None when the region is empty or too large to move.

    `source` and `mask` are a tampered training photo and its ground truth: the region is an
    object a person cut out of another photo, with the outline and edges such cuts have,
    which a blob (region_mask) lacks. Pasted into another authentic photo, perhaps rescaled,
    it makes a new splice of the kind the detector must find, with the host's background."""
    ys, xs = np.nonzero(mask > 0.5)
    if len(xs) < 64:
        return None
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    piece = source.crop(box)
    cut = Image.fromarray((mask[box[1] : box[3], box[0] : box[2]] > 0.5).astype(np.uint8) * 255)
    scale = rng.uniform(0.6, 1.2) if rng.random() < 0.5 else 1.0
    size = (max(4, round(piece.width * scale)), max(4, round(piece.height * scale)))
    if size[0] >= host.width or size[1] >= host.height:
        return None
    if size != piece.size:
        piece = piece.resize(size, Image.Resampling.BICUBIC)
        cut = cut.resize(size, Image.Resampling.BILINEAR)
    if rng.random() < 0.3:  # a feathered edge, as some cuts have
        cut = cut.filter(ImageFilter.GaussianBlur(1.0))
    left = int(rng.integers(0, host.width - size[0] + 1))
    top = int(rng.integers(0, host.height - size[1] + 1))
    tampered = host.copy()
    tampered.paste(piece, (left, top), cut)
    target = np.zeros((host.height, host.width), np.float32)
    target[top : top + size[1], left : left + size[0]] = np.asarray(cut) > 127
    return tampered, target
