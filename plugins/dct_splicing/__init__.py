"""DCT splicing: finds regions of a JPEG whose compression history differs from the rest of
the picture, from the file's own quantised DCT coefficients.

A photo that was a JPEG before it was edited keeps, in every 8x8 block that was not touched,
the trace of that earlier compression (coefficient histograms with periodic gaps and peaks,
aligned with the grid); a region pasted in from elsewhere, usually moved off that grid and
often rescaled, does not, and keeps its trace through a further re-save. A small fully
convolutional network (export/train_dct_splicing.py) reads, for every 8x8 luma block, its 15
lowest-frequency AC coefficients, the file's quantisation steps and (since 1.1.0) how the
block's pixel steps fall on the 8 positions of a block row and column (grid_phases: an earlier
JPEG grid off this one), and gives each block a probability of belonging to a spliced region;
the image's score is the strongest 5x5-block neighbourhood. It was trained on CASIA v1's
training split and on synthetic splices, every image of both classes re-saved at a random
quality, with per-block targets from the masks, so a file's quality alone cannot raise its
score.

Only JPEG files carry coefficients: other formats are not applicable. Large pictures are read
in at most MAX_TILES tiles of TILE x TILE blocks spread over the picture, which bounds the cost.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from scanner.detectors import Result
from scanner.onnx import OnnxDetector
from scanner_plugins.metadata.jpeg import block_coefficients, luma_plane

HERE = Path(__file__).parent
# The 15 lowest-frequency AC positions in zig-zag order (row, column of the 8x8 block).
POSITIONS = [
    (0, 1), (1, 0), (2, 0), (1, 1), (0, 2), (0, 3), (1, 2), (2, 1),
    (3, 0), (4, 0), (3, 1), (2, 2), (1, 3), (0, 4), (0, 5),
]  # fmt: skip
WHOLE = 16_384  # blocks (one megapixel): a picture this small is read whole
TILE = 64  # blocks per tile side (512 pixels)
MAX_TILES = 6
MIN_BLOCKS = 8  # a picture under 64 pixels a side has no neighbourhood to compare
NEIGHBOURHOOD = 5  # blocks: the score is the strongest 5x5 mean of the block map


def block_input(coefficients: np.ndarray, table: np.ndarray) -> np.ndarray:
    """The network's input for a grid of blocks: (rows, cols, 30) float32, the 15 coefficients
    and, repeated in every block, their 15 quantisation steps. Training calls this too."""
    rows, cols = coefficients.shape[:2]
    values = np.stack([coefficients[:, :, r, c] for r, c in POSITIONS], axis=-1)
    steps = np.array([table[r, c] for r, c in POSITIONS], np.float32)
    return np.concatenate(
        [values.astype(np.float32), np.broadcast_to(steps, (rows, cols, len(POSITIONS)))], -1
    )


PHASES = 8  # pixel positions within a block row or column


def grid_phases(luma: np.ndarray) -> np.ndarray:
    """(rows, cols, 16) float32: per 8x8 block of `luma` (uint8, on the file's grid), how its
    pixel steps between neighbouring columns (8 values) and rows (8 values) are shared among
    the 8 positions in the block, each set summing to 1. The current grid's boundaries (the
    last position) carry the last save's blocking everywhere; a region pasted from another
    JPEG off this grid keeps its earlier grid's blocking at another position, which a re-save
    does not move and the coefficients of this grid do not show (after Li et al. 2009, block
    artifact grids)."""
    rows, cols = luma.shape[0] // 8, luma.shape[1] // 8
    plane = luma[: rows * 8, : cols * 8].astype(np.float32)
    # The step from each pixel to the next along a row (the last column has none: zero).
    across = np.zeros_like(plane)
    across[:, :-1] = np.abs(np.diff(plane, axis=1))
    down = np.zeros_like(plane)
    down[:-1] = np.abs(np.diff(plane, axis=0))
    across = across.reshape(rows, 8, cols, PHASES).mean(axis=1)  # (rows, cols, phase)
    down = down.reshape(rows, PHASES, cols, 8).mean(axis=3).transpose(0, 2, 1)
    shares = [s / (s.sum(axis=-1, keepdims=True) + 1e-3) for s in (across, down)]
    return np.concatenate(shares, axis=-1).astype(np.float32)


def features(luma: np.ndarray, table: np.ndarray, phases: bool = False) -> np.ndarray:
    """The network's input for a region of a luma plane on the file's grid: block_input, and
    grid_phases after it when the model was trained with them (model.json's `grid_phases`)."""
    x = block_input(block_coefficients(luma, table), table)
    return np.concatenate([x, grid_phases(luma)], axis=-1) if phases else x


def tile_origins(rows: int, cols: int) -> list[tuple[int, int]]:
    """Top-left block of each tile read: the whole grid when it is small, else at most
    MAX_TILES tiles of TILE blocks spread evenly (first and last touch the edges)."""
    if rows * cols <= WHOLE:
        return [(0, 0)]
    along_rows = min(-(-rows // TILE), 3)
    along_cols = min(-(-cols // TILE), 3)
    while along_rows * along_cols > MAX_TILES:
        if along_rows >= along_cols:
            along_rows -= 1
        else:
            along_cols -= 1
    ys = np.linspace(0, max(rows - TILE, 0), along_rows).round().astype(int)
    xs = np.linspace(0, max(cols - TILE, 0), along_cols).round().astype(int)
    return [(int(y), int(x)) for y in ys for x in xs]


def tiles(
    data: bytes, phases: bool = False
) -> tuple[list[np.ndarray], list[tuple[int, int]], tuple] | str:
    """(network inputs, their top-left blocks, the luma plane's shape), or why the file cannot
    be read this way. `phases`: the inputs carry grid_phases too."""
    # The file's Y plane, decoded again (grey only, about half a full decode): the RGB the
    # scan already decoded cannot give the stored coefficients back exactly.
    try:
        plane = luma_plane(data)
    except (OSError, SyntaxError) as exc:
        # A damaged file the scan still scores (decoded as far as it goes, the rest grey):
        # grey blocks have no coefficients of the file's own, and their edge is not a splice.
        return f"the JPEG's coefficients cannot all be read ({exc})"
    if plane is None:
        return "not a JPEG with a luma plane (the detector reads JPEG DCT coefficients)"
    luma, table = plane
    rows, cols = luma.shape[0] // 8, luma.shape[1] // 8
    if min(rows, cols) < MIN_BLOCKS:
        return f"smaller than {MIN_BLOCKS * 8} pixels"
    origins = tile_origins(rows, cols)
    height, width = (rows, cols) if rows * cols <= WHOLE else (min(rows, TILE), min(cols, TILE))
    inputs = []
    for y, x in origins:
        region = luma[y * 8 : (y + height) * 8, x * 8 : (x + width) * 8]
        inputs.append(features(region, table, phases))
    return inputs, origins, luma.shape


def neighbourhood_max(block_map: np.ndarray) -> float:
    """The image's score from its block map: the largest mean over NEIGHBOURHOOD^2 blocks, so
    that a single noisy block does not decide, while a spliced object of a few blocks does."""
    size = (min(NEIGHBOURHOOD, block_map.shape[1]), min(NEIGHBOURHOOD, block_map.shape[0]))
    return float(cv2.blur(block_map.astype(np.float32), size).max())


def upright(heatmap: np.ndarray, data: bytes, size: tuple[int, int]) -> np.ndarray:
    """The block map, made in the file's stored orientation, turned as the decoded picture was
    (by the same ImageOps.exif_transpose, reading the file's own EXIF and XMP) and brought to
    its `size` (width, height)."""
    with Image.open(io.BytesIO(data)) as im:
        marks = {key: im.info[key] for key in ("exif", "xmp") if key in im.info}
        turned = im.getexif().get(0x0112, 1) != 1 or "xmp" in marks
    if not turned and heatmap.shape == (size[1], size[0]):
        return heatmap  # most files: no full-size copy (tens of ms on 12 MP)
    picture = Image.fromarray(heatmap, mode="F")
    picture.info.update(marks)
    picture = ImageOps.exif_transpose(picture)
    if picture.size != size:
        picture = picture.resize(size, Image.Resampling.NEAREST)
    return np.asarray(picture, dtype=np.float32)


class DctSplicing(OnnxDetector):
    name = "dct-splicing"
    version = "1.1.0"  # 1.1.0: reads each block's blocking per pixel position too (grid_phases)
    model_dir = HERE
    needs = frozenset({"rgb"})
    uses_settings = frozenset()
    threshold = 0.5  # replaced in load() by model.json's, chosen on held-out real photos
    description = (
        "Spliced regions of a JPEG, from its DCT coefficients' compression history. Heatmap."
    )
    batch_size = 1  # images differ in shape
    # ROC AUC 0.72 on CASIA's validation split re-saved at q85, where issue 11's bar is 0.80
    # (MODEL_CARD.md): run it when asked for, with -d dct-splicing.
    enabled_by_default = False

    def predict(self, batch):
        return [self._judge(sample) for sample in batch]

    def _judge(self, sample) -> Result:
        read = tiles(sample.data, bool(self.meta.get("grid_phases", False)))
        if isinstance(read, str):
            return Result.not_applicable(read)
        inputs, origins, (height, width) = read
        maps = self.model.run(np.stack(inputs))[0][..., 0]
        heatmap = np.zeros((height, width), np.float32)
        for block_map, (y, x) in zip(maps, origins, strict=True):
            pixels = np.kron(block_map, np.ones((8, 8), np.float32))
            heatmap[y * 8 : y * 8 + pixels.shape[0], x * 8 : x * 8 + pixels.shape[1]] = pixels
        score = max(neighbourhood_max(m) for m in maps)
        read_share = min(1.0, sum(m.size for m in maps) / ((height // 8) * (width // 8)))
        return Result.from_score(
            score,
            self.threshold,
            heatmap=upright(heatmap, sample.data, sample.size),
            details={"tiles": len(origins), "share_read": round(read_share, 3)},
        )
