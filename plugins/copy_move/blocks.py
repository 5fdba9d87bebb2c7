"""Copy-move evidence from matching blocks (after Fridrich, Soukal & Lukas 2003).

SIFT (matching.py) needs keypoints, and a clone laid over grass, water, a wall or foliage to hide
something has few that pass its ratio test: on CASIA's training copy-moves, 64 of the 76 that
SIFT missed gave it no region pair at all. A clone that was only moved, not turned or scaled
(what Photoshop's clone stamp and a plain copy-paste leave), repeats its pixels at one offset.
Every 16x16 block of a small grey copy is described by its 8 lowest DCT coefficients, coarsely
quantised; blocks sorted by those numbers put lookalikes next to each other, and an offset that
many textured lookalike pairs share is a candidate. It becomes a region pair when the source
moved by it reproduces the copy's pixels (matching.dense_match, the same check SIFT pairs get)
and the same offset applied once more does not (a periodic structure: tiles, a fence).
"""

from __future__ import annotations

import cv2
import numpy as np

BLOCK = 16
COEFFICIENTS = 8  # the lowest DCT frequencies, in zigzag order
STEP = 16.0  # quantisation of the coefficients (orthonormal DCT: 16 x a mean grey step of 1)
MIN_STD = 6.0  # grey standard deviation of a block worth matching; flat blocks match anything
NEIGHBOURS = 4  # each block is compared with this many that follow it in the sorted order
MIN_BLOCKS = 100  # block pairs that must share an offset (about a 26x26-pixel region)
MIN_MATCH = 0.6  # share of the copy's textured pixels the moved source must reproduce
# The longer side of the copy searched: the photo's own, within MIN_SIDE..SIDE. 384 for every
# photo before 1.9.0; at that size a region of 2% of a large photo holds about 50 textured
# block positions, half of MIN_BLOCKS, and copy-moves of 2% made in camera photos were found
# 9-10% of the time (47-66% at 768; MODEL_CARD.md). CASIA's photos stay at their own 384.
SIDE = 768
MIN_SIDE = 384
CANDIDATES = 3  # offsets checked, most-shared first
ZIGZAG = ((0, 0), (0, 1), (1, 0), (2, 0), (1, 1), (0, 2), (0, 3), (1, 2))


def _dct_rows() -> np.ndarray:
    n = np.arange(BLOCK)
    return np.array(
        [np.sqrt((1 if u == 0 else 2) / BLOCK) * np.cos((2 * n + 1) * u * np.pi / (2 * BLOCK))
         for u in range(BLOCK)],
        dtype=np.float32,
    )  # fmt: skip


DCT_ROWS = _dct_rows()


def _stable_argsort(keys: np.ndarray) -> np.ndarray:
    """np.argsort(keys, kind="stable") of uint64 keys, as four stable passes over 16 bits each
    (least significant first), where numpy sorts by radix: the same order, 2-3x faster than
    its merge sort of 64-bit keys (a 768 px copy has up to 400,000 textured blocks). Each pass
    gathers only its own 16-bit digits, not the 64-bit keys (a third less time)."""
    digits = keys.view(np.uint16).reshape(-1, 4)  # least significant first (little-endian)
    if not np.little_endian:
        digits = digits[:, ::-1]
    order = np.argsort(digits[:, 0], kind="stable")
    for column in (1, 2, 3):
        digit = np.ascontiguousarray(digits[:, column])
        order = order[np.argsort(digit[order], kind="stable")]
    return order


def shared_offsets(grey: np.ndarray, min_offset: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(offset (dx, dy), top-left corners (n, 2) of the copied blocks)], for up to CANDIDATES
    offsets that at least MIN_BLOCKS lookalike block pairs at least `min_offset` apart share
    (offsets within a pixel of each other counted together)."""
    image = grey.astype(np.float32)
    h, w = image.shape
    rows, cols = h - BLOCK + 1, w - BLOCK + 1
    if rows <= 0 or cols <= 0:
        return []
    # The block whose top-left corner is at each pixel (whole blocks only): its grey standard
    # deviation, and only for the textured ones, its DCT coefficients.
    box = dict(ksize=(BLOCK, BLOCK), anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    mean = cv2.blur(image, **box)[:rows, :cols]
    square = cv2.blur(image * image, **box)[:rows, :cols]
    std = np.sqrt(np.maximum(square - mean * mean, 0))
    textured = np.flatnonzero(std.ravel() >= MIN_STD)
    if len(textured) < MIN_BLOCKS:
        return []
    top, left = np.divmod(textured, cols)
    at = top * w + left  # the same blocks in the filtered images, which are h x w
    # One 64-bit key per block (8 quantised coefficients of 8 bits each, the first the most
    # significant): sorting the keys is the lexicographic sort of the coefficients, several
    # times faster than np.lexsort. The coefficients are kept one row each (each gathered and
    # quantised whole: a third less time than a column per coefficient).
    values = np.empty((COEFFICIENTS, len(textured)), np.float32)
    coefficient = np.empty((h, w), np.float32)
    for row, (u, v) in enumerate(ZIGZAG[:COEFFICIENTS]):
        # Each 2-D DCT basis is the outer product of two rows: two 1-D passes, not 256 taps.
        cv2.sepFilter2D(
            image,
            -1,
            DCT_ROWS[v],
            DCT_ROWS[u],
            dst=coefficient,
            anchor=(0, 0),
            borderType=cv2.BORDER_CONSTANT,
        )
        np.take(coefficient.ravel(), at, out=values[row])
    levels = np.round(values / np.float32(STEP))
    keys = _keys(np.clip(levels + 128, 0, 255, out=levels).astype(np.uint8))
    order = _stable_argsort(keys)
    keys = keys[order]
    corners = np.stack([left, top], axis=1)
    offsets, copies = [], []
    for k in range(1, NEIGHBOURS + 1):
        same = np.flatnonzero(keys[:-k] == keys[k:])  # few: compare their values only
        near = np.abs(values[:, order[same]] - values[:, order[same + k]]).max(axis=0) <= STEP
        alike = same[near]
        first, second = corners[order[alike]], corners[order[alike + k]]
        offset = second - first
        far = np.hypot(offset[:, 0], offset[:, 1]) >= min_offset
        first, second, offset = first[far], second[far], offset[far]
        # One direction for every pair: the copy is the block to the right (or below).
        swap = (offset[:, 0] < 0) | ((offset[:, 0] == 0) & (offset[:, 1] < 0))
        copies.append(np.where(swap[:, None], first, second))
        offsets.append(np.where(swap[:, None], -offset, offset))
    offset = np.concatenate(offsets)
    copy = np.concatenate(copies)
    if len(offset) < MIN_BLOCKS:
        return []
    # Offsets as one index each, counted.
    index = (offset[:, 1] + h) * (2 * w + 1) + (offset[:, 0] + w)
    votes = np.bincount(index, minlength=(2 * h + 1) * (2 * w + 1)).reshape(2 * h + 1, 2 * w + 1)
    found = []
    for y, x in vote_peaks(votes):
        near = (np.abs(offset[:, 0] - (x - w)) <= 1) & (np.abs(offset[:, 1] - (y - h)) <= 1)
        found.append((np.array([x - w, y - h]), copy[near]))
    return found


def _keys(levels: np.ndarray) -> np.ndarray:
    """One uint64 per column of `levels` (COEFFICIENTS x n uint8), its first row the most
    significant byte: the bytes laid out as the machine stores a uint64 and viewed as one."""
    rows = levels[::-1] if np.little_endian else levels
    return np.ascontiguousarray(rows.T).view(np.uint64).ravel()


def vote_peaks(votes: np.ndarray) -> list[tuple[int, int]]:
    """(row, column) of up to CANDIDATES offsets in a vote array, strongest first, each with at
    least MIN_BLOCKS votes in its 3x3 neighbourhood. Votes are pooled over 3x3 so that an
    offset that rounds either way (a resized or re-saved copy) keeps its votes together; the
    offset reported within the strongest neighbourhood is the one most pairs voted for. (Its
    centre was a pixel off the copy's offset in 4 of 5 training copy-moves that the blocks
    had found and lost: the moved source matched 0-26% of the copy's pixels there, 92-100%
    at the offset voted for.)"""
    pooled = cv2.boxFilter(votes.astype(np.float32), -1, (3, 3), normalize=False)
    peaks = []
    for _ in range(CANDIDATES):
        y, x = np.unravel_index(int(np.argmax(pooled)), pooled.shape)
        if pooled[y, x] < MIN_BLOCKS:
            break
        pooled[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3] = 0  # the next one elsewhere
        top, left = max(0, y - 1), max(0, x - 1)
        near = votes[top : y + 2, left : x + 2]
        dy, dx = np.unravel_index(int(np.argmax(near)), near.shape)
        peaks.append((int(top + dy), int(left + dx)))
    return peaks


def search_copy(grey: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
    """(the grey copy searched, its scale relative to the work copy `grey`, whose own scale
    to the photo is `scale`): as long as the photo itself, but within MIN_SIDE..SIDE and never
    longer than `grey`. A small photo's enlarged work copy is searched at the photo's size,
    where a clone's offset is a whole number of pixels and its blocks repeat exactly."""
    side = max(grey.shape)
    target = min(side, SIDE, max(side / scale, MIN_SIDE))
    if side <= target:
        return grey, 1.0
    factor = target / side
    size = (max(1, round(grey.shape[1] * factor)), max(1, round(grey.shape[0] * factor)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA), factor
