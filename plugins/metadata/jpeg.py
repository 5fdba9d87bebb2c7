"""JPEG structure: quality estimated from the quantisation tables, and traces of double
compression in the DCT coefficients recovered from the decoded pixels."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# The example tables of the JPEG standard (Annex K), natural (row-major) order. libjpeg, and so
# most software, scales these by quality; cameras mostly use tables of their own.
IJG_LUMA = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
     14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
     18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
)  # fmt: skip
IJG_CHROMA = np.array(
    [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
     24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32,
)  # fmt: skip


def ijg_table(base: np.ndarray, quality: int) -> np.ndarray:
    """libjpeg's jpeg_quality_scaling, with baseline clamping to 1..255."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255)


LUMA_TABLES = np.stack([ijg_table(IJG_LUMA, q) for q in range(1, 101)])


def estimate_quality(tables: dict[int, list[int]]) -> tuple[int, bool]:
    """(quality, standard): the libjpeg quality whose luma table is closest to table 0, and
    whether every table in the file is exactly a scaled standard table (software) rather than a
    table of its own (most cameras, Photoshop)."""
    luma = np.asarray(tables[0])
    errors = np.abs(LUMA_TABLES - luma).sum(axis=1)  # one row per quality 1..100
    quality = int(np.argmin(errors)) + 1
    standard = errors[quality - 1] == 0 and all(
        np.array_equal(ijg_table(IJG_CHROMA, quality), np.asarray(t))
        for index, t in tables.items()
        if index > 0
    )
    return quality, bool(standard)


def _dct_matrix() -> np.ndarray:
    k = np.arange(8)
    m = np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / 16) * np.sqrt(2 / 8)
    m[0] /= np.sqrt(2)
    return m


DCT = _dct_matrix()
# Low-frequency AC positions (row, column): enough coefficients there to see a histogram's shape.
POSITIONS = [(0, 1), (1, 0), (1, 1), (0, 2), (2, 0), (1, 2), (2, 1), (2, 2)]
MAX_BLOCKS = 40_000  # about 2.5 megapixels of luma: enough for the histograms, bounded cost


def luma_plane(data: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """(the decoded luma plane as uint8, the file's 8x8 luma quantisation table), or None when
    the file is not a JPEG with a luma table. No colour round trip: re-transforming its 8x8
    blocks and dividing by the table lands within rounding of the integers stored in the
    file."""
    with Image.open(io.BytesIO(data)) as im:
        if im.format != "JPEG" or 0 not in getattr(im, "quantization", {}):
            return None
        if im.mode not in ("L", "RGB", "YCbCr"):  # CMYK and the like: no luma plane to read
            return None
        table = np.asarray(im.quantization[0], dtype=np.float64).reshape(8, 8)
        # Decoded straight to grey, libjpeg hands over the Y plane itself (identical to the Y
        # of a YCbCr decode, checked) and skips the chroma work: 2.5x faster than YCbCr.
        im.draft("L", im.size)
        luma = np.asarray(im if im.mode == "L" else im.convert("L"))
    return luma, table


def _blocks(luma: np.ndarray) -> np.ndarray:
    """Every whole 8x8 block of `luma` (uint8, on the file's grid) minus 128, as (block rows,
    block columns, 8, 8) floats."""
    rows, cols = luma.shape[0] // 8, luma.shape[1] // 8
    return luma[: rows * 8, : cols * 8].reshape(rows, 8, cols, 8).transpose(0, 2, 1, 3) - 128.0


def block_coefficients(luma: np.ndarray, table: np.ndarray) -> np.ndarray:
    """The quantised DCT coefficients of every whole 8x8 block of `luma` (uint8, on the file's
    grid), as (block rows, block columns, 8, 8) integers."""
    return np.rint((DCT @ _blocks(luma) @ DCT.T) / table).astype(np.int32)


# Each position's 8x8 basis as a column: a block's coefficient there is its 64 pixels (minus
# 128) times that column, the 2-D DCT written out for the one frequency.
POSITION_BASIS = np.stack([np.outer(DCT[r], DCT[c]).ravel() for r, c in POSITIONS], axis=1)


def luma_coefficients(data: bytes) -> np.ndarray | None:
    """The quantised luma DCT coefficients at POSITIONS, (blocks, len(POSITIONS)) integers, of
    whole rows of blocks spread evenly over the picture (at most MAX_BLOCKS), or None when the
    file is not a baseline-decodable JPEG."""
    plane = luma_plane(data)
    if plane is None:
        return None
    luma, table = plane
    rows, cols = luma.shape[0] // 8, luma.shape[1] // 8
    # Whole rows of blocks, evenly spaced, before any float copy: a 12-megapixel photo then
    # costs a tenth of its size in memory and time here.
    step = max(1, rows * cols // MAX_BLOCKS + 1)
    strips = luma[: rows * 8].reshape(rows, 8, -1)[::step].reshape(-1, luma.shape[1])
    blocks = _blocks(strips).reshape(-1, 64)
    # Only the positions the histograms read: one (blocks x 64) by (64 x 8) product, where
    # the whole 8x8 transform of every block (block_coefficients) cost 2-3 times as long
    # (40,000 blocks of a camera photo: 4-6 ms against 12-14).
    steps = np.array([table[r, c] for r, c in POSITIONS])
    return np.rint(blocks @ POSITION_BASIS / steps).astype(np.int32)


def double_quantisation(coefficients: np.ndarray, max_bin: int = 20) -> float:
    """How far the coefficient histograms are from the smooth, decreasing shape a single
    compression leaves: 0 for a perfectly monotone histogram, larger when bins are periodically
    emptied or piled up, which is what quantising twice with different steps does.

    `coefficients`: luma_coefficients' (a column per position of POSITIONS). For each
    low-frequency position, the histogram of |k| for k = 1..max_bin is compared with
    its own running minimum from the left: mass above that envelope can only come from bins
    that rise again after falling. The result is the count-weighted share of such mass."""
    excess = total = 0.0
    for values in np.abs(coefficients).T:
        hist = np.bincount(values[(values >= 1) & (values <= max_bin)], minlength=max_bin + 1)[1:]
        if hist.sum() < 200:  # too few non-zero coefficients to judge a shape
            continue
        envelope = np.minimum.accumulate(hist)
        excess += float((hist - envelope).sum())
        total += float(hist.sum())
    return excess / total if total else 0.0
