"""Keras definitions of every network the project trains or converts.

Meso4 and MesoInception4 follow the MesoNet authors' classifiers.py layer for layer (Afchar et
al. 2018); only the layer names are ours, so that weights are mapped by name, never by position.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

MESO_SIDE = 256


def _conv_bn_pool(x, filters, kernel, pool, name):
    x = layers.Conv2D(filters, kernel, padding="same", activation="relu", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.MaxPooling2D(pool_size=pool, padding="same", name=f"{name}_pool")(x)


def _meso_head(x):
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(0.5, name="dropout1")(x)
    x = layers.Dense(16, name="dense1")(x)
    x = layers.LeakyReLU(negative_slope=0.1, name="leaky")(x)
    x = layers.Dropout(0.5, name="dropout2")(x)
    return layers.Dense(1, activation="sigmoid", name="dense2")(x)


def meso4() -> keras.Model:
    """Meso-4. Input RGB 256x256 in [0, 1]; output sigmoid (the authors' is P(real))."""
    inputs = keras.Input((MESO_SIDE, MESO_SIDE, 3), name="input")
    x = _conv_bn_pool(inputs, 8, 3, 2, "block1")
    x = _conv_bn_pool(x, 8, 5, 2, "block2")
    x = _conv_bn_pool(x, 16, 5, 2, "block3")
    x = _conv_bn_pool(x, 16, 5, 4, "block4")
    return keras.Model(inputs, _meso_head(x), name="meso4")


def _inception(x, a, b, c, d, name):
    """The authors' InceptionLayer: 1x1; 1x1->3x3; 1x1->3x3 dilated 2; 1x1->3x3 dilated 3."""

    def conv(t, filters, kernel, suffix, dilation=1):
        return layers.Conv2D(
            filters,
            kernel,
            padding="same",
            activation="relu",
            dilation_rate=dilation,
            name=f"{name}_{suffix}",
        )(t)

    x1 = conv(x, a, 1, "a1x1")
    x2 = conv(conv(x, b, 1, "b1x1"), b, 3, "b3x3")
    x3 = conv(conv(x, c, 1, "c1x1"), c, 3, "c3x3d2", dilation=2)
    x4 = conv(conv(x, d, 1, "d1x1"), d, 3, "d3x3d3", dilation=3)
    return layers.Concatenate(axis=-1, name=f"{name}_concat")([x1, x2, x3, x4])


def meso_inception4() -> keras.Model:
    """MesoInception-4. Same input and output as Meso-4."""
    inputs = keras.Input((MESO_SIDE, MESO_SIDE, 3), name="input")
    x = _inception(inputs, 1, 4, 4, 2, "inc1")
    x = layers.BatchNormalization(name="inc1_bn")(x)
    x = layers.MaxPooling2D(2, padding="same", name="inc1_pool")(x)
    x = _inception(x, 2, 4, 4, 2, "inc2")
    x = layers.BatchNormalization(name="inc2_bn")(x)
    x = layers.MaxPooling2D(2, padding="same", name="inc2_pool")(x)
    x = _conv_bn_pool(x, 16, 5, 2, "block3")
    x = _conv_bn_pool(x, 16, 5, 4, "block4")
    return keras.Model(inputs, _meso_head(x), name="meso_inception4")


# The order in which the authors' code creates each kind of layer: their weight files name
# layers conv2d_N, batch_normalization_N, dense_N with N counting up in this order.
CREATION_ORDER = {
    "meso4": {
        "conv2d": ["block1_conv", "block2_conv", "block3_conv", "block4_conv"],
        "batch_normalization": ["block1_bn", "block2_bn", "block3_bn", "block4_bn"],
        "dense": ["dense1", "dense2"],
    },
    "meso_inception4": {
        "conv2d": [
            f"{inc}_{s}"
            for inc in ("inc1", "inc2")
            for s in ("a1x1", "b1x1", "b3x3", "c1x1", "c3x3d2", "d1x1", "d3x3d3")
        ]
        + ["block3_conv", "block4_conv"],
        "batch_normalization": ["inc1_bn", "inc2_bn", "block3_bn", "block4_bn"],
        "dense": ["dense1", "dense2"],
    },
}


def seed_ela_cnn(side: int = 128) -> keras.Model:
    """The seed's ELA network, kept only to compare against: 29.5M parameters at 128x128."""
    inputs = keras.Input((side, side, 3), name="input")
    x = layers.Conv2D(32, 5, activation="relu", name="conv1")(inputs)
    x = layers.Conv2D(32, 5, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Dropout(0.25, name="dropout1")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(256, activation="relu", name="dense1")(x)
    x = layers.Dropout(0.5, name="dropout2")(x)
    outputs = layers.Dense(2, activation="softmax", name="dense2")(x)
    return keras.Model(inputs, outputs, name="seed_ela_cnn")


def _fcn(inputs, x, width: int, name: str) -> keras.Model:
    """The tampering FCN body shared by the ELA and SRM networks: 3 stages of 2x (3x3 conv,
    batch norm, ReLU) + 2x2 max-pool, a 3x3 conv, a 1x1 conv to one logit per 8x8 cell.
    Outputs `score` (the image's P(tampered), from the most suspicious cell through a learned
    affine calibration) and `heatmap` (P(tampered) per 8x8 cell, (N, ceil(H/8), ceil(W/8), 1))."""
    for stage, filters in enumerate((width, width * 2, width * 4), start=1):
        for i in (1, 2):
            x = layers.Conv2D(filters, 3, padding="same", name=f"s{stage}_conv{i}")(x)
            x = layers.BatchNormalization(name=f"s{stage}_bn{i}")(x)
            x = layers.ReLU(name=f"s{stage}_relu{i}")(x)
        x = layers.MaxPooling2D(2, padding="same", name=f"s{stage}_pool")(x)
    x = layers.Conv2D(width * 2, 3, padding="same", activation="relu", name="head_conv")(x)
    logits = layers.Conv2D(1, 1, name="cell_logits")(x)
    heatmap = layers.Activation("sigmoid", name="heatmap")(logits)
    top = layers.GlobalMaxPooling2D(name="max_cell")(logits)
    score = layers.Dense(1, activation="sigmoid", name="score")(top)
    return keras.Model(inputs, [score, heatmap], name=name)


def ela_fcn(width: int = 32) -> keras.Model:
    """The shipped ELA network: fully convolutional, any image size. Input: the ELA input of
    scanner_plugins.ela_cnn.network_input, (N, H, W, 3)."""
    inputs = keras.Input((None, None, 3), name="input")
    return _fcn(inputs, inputs, width, "ela_fcn")


# The three 5x5 high-pass kernels of the spatial rich model (Fridrich and Kodovsky 2012) as used
# by Zhou et al. 2018 for manipulation detection: they remove the content and keep the noise.
SRM_KERNELS = np.array(
    [
        [[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]],
        [[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2],
         [-1, 2, -2, 2, -1]],
        [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]],
    ],
    dtype=np.float32,
) / np.array([4, 12, 2], dtype=np.float32)[:, None, None]  # fmt: skip
SRM_TRUNCATION = 3.0  # residuals beyond +-3 grey levels are edges, not noise


def srm_fcn(width: int = 16) -> keras.Model:
    """The noise-residual network: a fixed, untrained SRM layer (each of the 3 kernels on each
    colour channel: 9 residual maps), truncated to +-3 and scaled to +-1, then the tampering FCN.
    Input: RGB in 0..255, (N, H, W, 3)."""
    kernel = np.zeros((5, 5, 3, 9), np.float32)
    for k in range(3):
        for c in range(3):
            kernel[:, :, c, 3 * k + c] = SRM_KERNELS[k]
    inputs = keras.Input((None, None, 3), name="input")
    srm = layers.Conv2D(9, 5, padding="same", use_bias=False, trainable=False, name="srm")
    x = srm(inputs)
    srm.set_weights([kernel])
    x = layers.Activation(
        lambda r: keras.ops.clip(r, -SRM_TRUNCATION, SRM_TRUNCATION) / SRM_TRUNCATION,
        name="truncate",
    )(x)
    return _fcn(inputs, x, width, "srm_fcn")
