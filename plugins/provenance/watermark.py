"""The invisible watermarks Stable Diffusion's reference pipelines embed by default.

CompVis' and Stability's SD 1.x / 2.x scripts and diffusers' SDXL pipelines mark every picture
with invisible-watermark's `dwtDct` method: the picture's U channel (OpenCV's YUV), one level of
Haar wavelet, its approximation cut into 4x4 blocks, and in each block the largest coefficient
but the first nudged to 0.25 (bit 0) or 0.75 (bit 1) of a step of 36. Block k carries bit
k mod the message's length, so every bit is repeated all over the picture and read back as a
majority vote. This is our own reader of that scheme (numpy and OpenCV, no PyWavelets, no
torch); tests/test_watermark.py checks it against the package's own encoder.

The scheme survives a lossless save and a JPEG at q90 or above WITHOUT chroma subsampling;
JPEG's usual 4:2:0 subsampling halves the U channel and erases it (invisible-watermark's own
decoder reads it no better), as does any resize or crop that moves the grid. A message counts
only when the bits read match it nearly exactly: at most `max_errors(n)` wrong bits, chosen so
that random bits would match by chance less than once in 10 million. A flat picture reads as
all ones, which matches none of the messages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

STEP = 36.0  # the U channel's quantisation step (invisible-watermark's default scales [0, 36, 0])
BLOCK = 4
MIN_PIXELS = 256 * 256  # the package refuses to mark or read anything smaller
MAX_PIXELS = 1 << 20  # read the top band of at most ~1 MP: every bit recurs in every band
CHANCE = 1e-7  # the largest chance that random bits match a message


def _bits(data: bytes) -> tuple[int, ...]:
    return tuple(int(b) for b in np.unpackbits(np.frombuffer(data, dtype=np.uint8)))


# diffusers' StableDiffusionXLWatermarker: WATERMARK_MESSAGE as 48 bits.
SDXL_BITS = tuple(int(b) for b in bin(0b101100111110110010010000011110111011000110011110)[2:])


@dataclass(frozen=True)
class Message:
    name: str  # who embeds it
    text: str  # the message, as people quote it
    bits: tuple[int, ...]
    # The channel order of the array the pipeline handed to the encoder, which treats whatever
    # it gets as BGR: SD 1.x/2.x convert to BGR first, diffusers' SDXL passes RGB as it is.
    order: str


MESSAGES = (
    Message("Stable Diffusion 1.x reference scripts", "StableDiffusionV1",
            _bits(b"StableDiffusionV1"), "BGR"),
    Message("Stable Diffusion 2.x reference scripts", "SDV2", _bits(b"SDV2"), "BGR"),
    Message("SDXL (diffusers)", "SDXL 48-bit message", SDXL_BITS, "RGB"),
    Message("SDXL (Stability's generative-models)", "SDXL 48-bit message", SDXL_BITS, "BGR"),
)  # fmt: skip


def max_errors(length: int) -> int:
    """The most wrong bits a near-exact match of `length` bits may have: the largest k with
    P(Binomial(length, 1/2) <= k) < CHANCE."""
    total, k = 0, -1
    while True:
        total += math.comb(length, k + 1)
        if total / 2**length >= CHANCE:
            return k
        k += 1


def block_votes(rgb: np.ndarray, order: str) -> np.ndarray:
    """Each 4x4 block's bit, in the encoder's order (row by row), of an (H, W, 3) uint8 RGB
    array whose encoder was handed it in channel `order` ("RGB" or "BGR"). The array may be
    a top band of the picture in whole 8-pixel rows: block k is then the same as in the whole."""
    height, width = rgb.shape[0] // 4 * 4, rgb.shape[1] // 4 * 4
    array = rgb[:height, :width]
    # The array as the encoder saw it; it reads whatever it gets as BGR, and so does cvtColor.
    seen = array[..., ::-1] if order == "BGR" else array
    u = cv2.cvtColor(np.ascontiguousarray(seen), cv2.COLOR_BGR2YUV)[..., 1].astype(np.float64)
    approx = (u[0::2, 0::2] + u[0::2, 1::2] + u[1::2, 0::2] + u[1::2, 1::2]) / 2  # Haar LL
    rows, cols = approx.shape[0] // BLOCK, approx.shape[1] // BLOCK
    blocks = approx[: rows * BLOCK, : cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK)
    blocks = np.abs(blocks.transpose(0, 2, 1, 3).reshape(-1, BLOCK * BLOCK)[:, 1:])
    largest = blocks[np.arange(len(blocks)), blocks.argmax(axis=1)]
    return (largest % STEP) > STEP / 2


def read_bits(votes: np.ndarray, length: int) -> np.ndarray:
    """The `length` bits of a message: block k votes for bit k mod length; the majority wins."""
    position = np.arange(len(votes)) % length
    ones = np.bincount(position, weights=votes, minlength=length)
    counts = np.bincount(position, minlength=length)
    return (ones / np.maximum(counts, 1)) > 0.5


def top_band(rgb: Image.Image) -> np.ndarray:
    """The picture's top rows, at most MAX_PIXELS, as an (H, W, 3) uint8 array: whole 8-pixel
    rows (two 4x4 blocks of the half-size approximation), so that block numbers still match."""
    rows = max(8, MAX_PIXELS // max(rgb.width, 1) // 8 * 8)
    if rows < rgb.height:
        rgb = rgb.crop((0, 0, rgb.width, rows))
    return np.asarray(rgb.convert("RGB"), dtype=np.uint8)


def find_watermarks(rgb: Image.Image) -> list[str]:
    """One line per message found in the picture, e.g. "invisible watermark 'SDV2' of Stable
    Diffusion 2.x reference scripts (32 of 32 bits)"."""
    if rgb.width * rgb.height < MIN_PIXELS or min(rgb.size) < 2 * BLOCK * 2:
        return []  # too small to carry a mark, or not one whole block row (a 1-pixel strip)
    band = top_band(rgb)
    votes = {order: block_votes(band, order) for order in ("RGB", "BGR")}
    found = []
    for message in MESSAGES:
        wanted = np.array(message.bits, dtype=bool)
        right = int((read_bits(votes[message.order], len(wanted)) == wanted).sum())
        if len(wanted) - right <= max_errors(len(wanted)):
            found.append(
                f"invisible watermark '{message.text}' of {message.name} "
                f"({right} of {len(wanted)} bits)"
            )
    return found
