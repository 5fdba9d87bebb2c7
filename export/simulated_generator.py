"""Pictures remade by random generator-like upsamplers, for training the generated detector on
more generators than the data holds (an experiment of issue 13; export/train_generated.py
--simulated).

After Zhang, Karaman & Chang 2019 (AutoGAN: "Detecting and simulating artifacts in GAN fake
images"): every GAN and every latent-diffusion decoder ends in a stack of learnt upsampling
layers (a transposed convolution, or a nearest-neighbour doubling followed by a convolution),
and those layers leave periodic traces a detector can learn. AutoGAN trains one autoencoder to
make such pictures from real ones; here each picture gets a *new random* upsampler instead,
so that no one fingerprint is learnt but the family of them.

A real crop is shrunk by 2 or 4 and brought back to its size twice: once by an upsampler
(`simulated`, a fake) and once by an ordinary resampling filter (`control`, a real). Both lose
the same detail, so a detector cannot tell them apart by sharpness, only by how the lost
pixels were made up.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

PLAIN = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)
BILINEAR_TAPS = np.array([0.25, 0.75, 0.75, 0.25], np.float32)  # stride-2 transposed conv


def _transposed(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A stride-2 transposed convolution (zeros between the pixels, then a 4x4 kernel per
    channel): a bilinear kernel perturbed, so that its four phases no longer sum to one alike
    (the checkerboard of Odena et al. 2016)."""
    height, width, channels = x.shape
    spread = np.zeros((2 * height, 2 * width, channels), np.float32)
    spread[::2, ::2] = x
    out = np.empty_like(spread)
    noise = rng.uniform(0.002, 0.02)
    for c in range(channels):
        kernel = np.outer(BILINEAR_TAPS, BILINEAR_TAPS) + rng.normal(0, noise, (4, 4))
        out[..., c] = cv2.filter2D(spread[..., c], -1, kernel.astype(np.float32))
    return out


def _nearest_conv(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A nearest-neighbour doubling then a 3x3 convolution per channel (what latent-diffusion
    decoders and most recent GANs do): a smoothing kernel with random weights added."""
    doubled = np.repeat(np.repeat(x, 2, axis=0), 2, axis=1)
    noise = rng.uniform(0.005, 0.03)
    out = np.empty_like(doubled)
    base = np.outer([1, 2, 1], [1, 2, 1]).astype(np.float32) / 16
    for c in range(x.shape[2]):
        kernel = base + rng.normal(0, noise, (3, 3))
        kernel /= kernel.sum() if abs(kernel.sum()) > 0.5 else 1.0
        out[..., c] = cv2.filter2D(doubled[..., c], -1, kernel.astype(np.float32))
    return out


def upsampled(low: np.ndarray, stages: int, rng: np.random.Generator) -> np.ndarray:
    """`low` (h, w, 3) float32 0..255 brought up by 2**stages through random layers, with a
    random mix of the colour channels after each (a convolution's channels are never
    independent) and the last layer's clipping to the pixel range."""
    x = low
    for _ in range(stages):
        x = _transposed(x, rng) if rng.random() < 0.5 else _nearest_conv(x, rng)
        mix = np.eye(3, dtype=np.float32) + rng.normal(0, 0.03, (3, 3)).astype(np.float32)
        mix /= mix.sum(axis=1, keepdims=True)
        x = x @ mix.T
    return np.clip(x, 0, 255)


def simulated_pair(rgb: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
    """(the picture remade by a random upsampler: fake, the same remade by a plain filter:
    real), both of `rgb`'s size (each side a multiple of 4 expected; rounded down otherwise)."""
    stages = 1 if rng.random() < 0.5 else 2
    factor = 2**stages
    width, height = (rgb.width // factor) * factor, (rgb.height // factor) * factor
    rgb = rgb.crop((0, 0, width, height))
    low = rgb.resize((width // factor, height // factor), Image.Resampling.BOX)
    fake = upsampled(np.asarray(low, np.float32), stages, rng)
    control = low.resize((width, height), PLAIN[int(rng.integers(len(PLAIN)))])
    return Image.fromarray(fake.round().astype(np.uint8)), control
