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
    host: Image.Image, donor: Image.Image, rng: np.random.Generator
) -> tuple[Image.Image, Image.Image, np.ndarray]:
    """(authentic, tampered, mask as float32 0/1) at the host's size; both images have been
    through the same final JPEG save."""
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
    final = int(rng.integers(70, 99))
    target = (np.asarray(mask) > 127).astype(np.float32)
    return jpeg_roundtrip(host, final), jpeg_roundtrip(tampered, final), target
