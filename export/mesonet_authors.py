"""Turn the MesoNet authors' weight files (.h5, Keras 2.1.5, weights only) into ONNX detectors.

    python -m export.mesonet_authors ../shared/data/mesonet/weights/Meso4_DF.h5 meso4-df.onnx
    SCANNER_MESO4_MODEL=$PWD/meso4-df.onnx scanner scan faces/

The authors' sigmoid is P(real) (their data generator sorted the folders `df` < `real`); the
converted model outputs P(fake) = 1 - P(real), the scanner's convention. These weights and
anything converted from them are third-party material: never commit them.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
from PIL import Image

from export import models
from export.onnx_export import check_parity, to_onnx

PARTS = {
    "conv2d": ("kernel", "bias"),
    "batch_normalization": ("gamma", "beta", "moving_mean", "moving_variance"),
    "dense": ("kernel", "bias"),
}


def architecture_of(h5_path: str | Path) -> str:
    """The architecture a weight file is for, from its layers (their names vary by file)."""
    with h5py.File(h5_path, "r") as f:
        convs = sum(1 for n in f if n.startswith("conv2d_"))
    if convs == 4:
        return "meso4"
    if convs == 16:
        return "meso_inception4"
    raise ValueError(
        f"{h5_path}: {convs} convolution layers, neither Meso-4 (4) nor MesoInception-4 (16)"
    )


def load_authors_weights(model: keras.Model, h5_path: str | Path, arch: str) -> keras.Model:
    """Assign weights layer by layer. The file names layers conv2d_N etc. with N counting in
    creation order (offset by whatever the authors built before), and stores them in another
    order; two 1x1 kernels of MesoInception-4 even share a shape. So: sort each kind by N and
    pair it with our layers in the authors' creation order."""
    with h5py.File(h5_path, "r") as f:
        for kind, ours in models.CREATION_ORDER[arch].items():
            theirs = sorted(
                (n for n in f if re.fullmatch(rf"{kind}_\d+", n)),
                key=lambda n: int(n.rsplit("_", 1)[1]),
            )
            if len(theirs) != len(ours):
                raise ValueError(f"{h5_path}: {len(theirs)} {kind} layers, expected {len(ours)}")
            for their_name, our_name in zip(theirs, ours, strict=True):
                group = f[their_name][their_name]
                values = [np.asarray(group[f"{part}:0"]) for part in PARTS[kind]]
                model.get_layer(our_name).set_weights(values)
    return model


def as_p_fake(model: keras.Model) -> keras.Model:
    """Wrap a P(real) model so that it outputs P(fake)."""
    inputs = keras.Input(model.inputs[0].shape[1:], name="input")
    flipped = keras.layers.Lambda(lambda p: 1.0 - p, name="p_fake")(model(inputs))
    return keras.Model(inputs, flipped, name=f"{model.name}_p_fake")


def load_face(path: str | Path) -> np.ndarray:
    """As the authors' generator fed images: RGB, resized to 256x256 (nearest), / 255."""
    image = Image.open(path).convert("RGB").resize((256, 256), Image.Resampling.NEAREST)
    return np.asarray(image, dtype=np.float32) / 255.0


def convert(h5_path: str | Path, out_path: str | Path, parity_images: list[str]) -> float:
    """Write the P(fake) ONNX model; returns the Keras/ONNX parity on `parity_images`."""
    arch = architecture_of(h5_path)
    model = as_p_fake(load_authors_weights(getattr(models, arch)(), h5_path, arch))
    data = to_onnx(model, out_path)
    return check_parity(model, data, np.stack([load_face(p) for p in parity_images]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", help="an authors' .h5 file, e.g. Meso4_DF.h5")
    parser.add_argument("output", help="where to write the .onnx model")
    parser.add_argument(
        "--images",
        nargs="*",
        help="face images for the parity check [default: ../shared/data/mesonet/test_images]",
    )
    args = parser.parse_args(argv)
    images = args.images or sorted(
        str(p) for p in Path("../shared/data/mesonet/test_images").glob("*/*.jpg")
    )
    if not images:
        sys.exit("no images for the parity check: pass --images")
    worst = convert(args.weights, args.output, images)
    print(
        f"wrote {args.output} ({architecture_of(args.weights)}, output P(fake)); "
        f"Keras/ONNX max difference {worst:.1e} on {len(images)} images"
    )
    print(
        f"use it: SCANNER_{'MESO4' if 'Meso4' in Path(args.weights).name else 'MESOINCEPTION4'}"
        f"_MODEL={Path(args.output).resolve()} scanner scan ..."
    )


if __name__ == "__main__":
    main()
