"""Copy-move's block matching (plugins/copy_move/blocks.py): moved clones of regions that give
SIFT too few keypoints, on pictures made here; periodic structures, smooth skies and lines of
text are not copies."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from conftest import jpeg_bytes
from PIL import Image, ImageDraw, ImageFont

from scanner.imaging import Sample, decode
from scanner_plugins.copy_move import CopyMove
from scanner_plugins.copy_move.blocks import (
    COEFFICIENTS,
    MIN_BLOCKS,
    _keys,
    _stable_argsort,
    vote_peaks,
)
from scanner_plugins.copy_move.matching import block_pairs, work_copy

SIZE = (384, 256)  # CASIA's


def resaved(grey: np.ndarray, quality: int = 85) -> np.ndarray:
    data = jpeg_bytes(Image.fromarray(grey), quality)
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


def foliage(seed: int) -> np.ndarray:
    """A soft, low-contrast texture (grass or leaves out of focus) over a gradient."""
    rng = np.random.default_rng(seed)
    width, height = SIZE
    noise = cv2.GaussianBlur(rng.normal(0, 40, (height, width)).astype(np.float32), (0, 0), 1.5)
    slope = np.linspace(90, 150, width, dtype=np.float32)[None, :]
    return np.clip(slope + noise, 0, 255).astype(np.uint8)


def test_a_moved_clone_of_soft_texture_is_found_at_its_offset():
    grey = foliage(1)
    grey[90:170, 230:320] = grey[60:140, 40:130].copy()  # moved 190 right, 30 down
    work, scale = work_copy(resaved(grey))
    pairs = block_pairs(work, scale, [])
    assert pairs, "no block pair"
    pair = max(pairs, key=lambda p: p.dense)
    shift = np.abs(pair.transform[:, 2]) / scale
    assert np.allclose(shift, (190, 30), atol=2), shift
    assert pair.repeats == 0 and pair.dense >= 0.6 and pair.inliers >= 100


def test_the_detector_flags_it_and_not_the_untouched_picture():
    detector = CopyMove()
    detector.load()
    original = foliage(2)
    forged = original.copy()
    forged[90:170, 230:320] = forged[60:140, 40:130].copy()
    labels = []
    for grey in (original, forged):
        data = jpeg_bytes(Image.fromarray(grey).convert("RGB"), 85)
        rgb, fmt = decode(data)
        labels.append(detector.predict([Sample("x.jpg", "", data, rgb, fmt)])[0].label)
    assert labels == ["real", "fake"]


def test_a_smooth_sky_gives_no_block_pair():
    rng = np.random.default_rng(3)
    width, height = SIZE
    sky = np.linspace(120, 220, height, dtype=np.float32)[:, None] + np.zeros((1, width))
    sky = np.clip(sky + rng.normal(0, 1.5, sky.shape), 0, 255).astype(np.uint8)
    work, scale = work_copy(resaved(sky))
    assert block_pairs(work, scale, []) == []


def test_a_tiled_wall_is_periodic_not_a_copy():
    tile = foliage(4)[:48, :64]
    wall = np.tile(tile, (6, 6))[: SIZE[1], : SIZE[0]]
    work, scale = work_copy(resaved(wall))
    pairs = block_pairs(work, scale, [])
    assert pairs and all(p.repeats == 1.0 for p in pairs)  # found, and seen to repeat


def test_the_offset_reported_is_the_one_most_pairs_voted_for():
    # A copy's 100 votes at one offset, and lookalike pairs one and two columns right of it
    # (a smooth texture matches itself a pixel off): the strongest 3x3 neighbourhood is
    # centred a column right of the copy, whose offset is still the one reported.
    votes = np.zeros((20, 20), np.int64)
    votes[5, 5] = MIN_BLOCKS
    votes[4:7, 7] = MIN_BLOCKS * 6 // 10
    assert vote_peaks(votes)[0] == (5, 5)


MODULES = {
    "cli": "commands",
    "config": "settings",
    "detectors": "the contract",
    "evaluate": "metrics",
    "face_finder": "faces",
    "files": "walking folders",
    "imaging": "decoding",
    "logs": "log lines",
    "onnx": "sessions",
    "output": "tables",
    "paths": "stored paths",
    "pipeline": "the spine",
    "ray_engine": "Ray",
    "report": "pages",
    "store": "the database",
    "verdict": "the rule",
    "watch": "the daemon",
    "work": "one picture",
    "workers": "processes",
}


@pytest.mark.parametrize("size, quality", [(13, None), (16, 90), (18, 75)])
def test_a_screenshot_of_a_table_is_not_a_copy(size, quality):
    """Lines that start alike repeat at the line period and several periods apart. 1.5.0
    flagged 22 of 27 such screenshots (9 font sizes; PNG, JPEG q90, q75), each by a pair
    several lines apart whose own next step fell past the table; 1.6.0 sees that the copy
    repeats at a fraction of that step (matching.periodic_harmonics). Words repeated at
    different places along the lines are pixel-identical copies still (the card says so)."""
    lines = [f"| `scanner/{name}.py` | {what} |" for name, what in MODULES.items()]
    screen = Image.new("RGB", (800, 600), "white")
    font = ImageFont.load_default(size=size)
    ImageDraw.Draw(screen).multiline_text(
        (20, 20), "\n".join(lines), fill=(20, 20, 20), font=font, spacing=5
    )
    buffer = io.BytesIO()
    screen.save(buffer, "PNG") if quality is None else screen.save(buffer, "JPEG", quality=quality)
    data = buffer.getvalue()
    rgb, fmt = decode(data)
    detector = CopyMove()
    detector.load()
    assert detector.predict([Sample("x", "", data, rgb, fmt)])[0].label == "real"


def test_block_keys_sort_as_their_coefficients_do():
    """The 64-bit keys order blocks as their quantised coefficients, first one first, and
    the radix sort keeps ties in raster order, as numpy's stable sort does (the order sets
    which lookalike blocks are compared)."""
    rng = np.random.default_rng(3)
    levels = rng.integers(0, 4, (COEFFICIENTS, 5000)).astype(np.uint8)  # many ties
    levels[0, :10] = 255
    keys = _keys(levels)
    lexicographic = np.lexsort(levels[::-1])  # np.lexsort: its last row sorts first
    assert np.array_equal(np.argsort(keys, kind="stable"), lexicographic)
    assert np.array_equal(_stable_argsort(keys), lexicographic)
