"""Rebuild every shipped model from the data, then print the numbers their cards quote.

    python -m export.build_all

Deterministic seeds; about 25 minutes for the ELA-CNN and the face-blend network, 15 for the
splicing network, 17 for the DCT splicing network, 13 for the generated-image network (and 13
for each of its three leave-one-out runs, kept in a temporary folder), 10 for the copy-move
calibration and the two Meso networks each, 3 for the ELA-PatchNet and 1 for the GAN
spectrum model on 2 CPU cores. Results can differ in the
last digits between machines (TensorFlow's CPU kernels). The metadata detector has no model;
its numbers are printed too.
"""

import tempfile
from pathlib import Path

from export import (
    evaluate_models,
    train_copy_move,
    train_dct_splicing,
    train_ela_cnn,
    train_face_blend,
    train_generated,
    train_meso,
    train_patchnet,
    train_spectrum,
    train_splicing,
)


def main() -> None:
    train_ela_cnn.main(["--synthetic"])
    train_ela_cnn.main(["--input", "srm"])
    train_meso.main([])
    train_patchnet.main([])
    train_spectrum.main([])
    train_copy_move.main([])
    train_splicing.main([])
    train_dct_splicing.main([])
    train_face_blend.main([])
    train_generated.main([])
    with tempfile.TemporaryDirectory() as scratch:
        left_out = [Path(scratch) / f for f in ("sd15", "stylegan2", "cnndetection")]
        for folder in left_out:
            train_generated.main(["--leave-out", folder.name, "--out", str(folder)])
        evaluate_models.main(["generated", "--logo", *map(str, left_out)])
    for name in (
        "copy-move",
        "splicing",
        "dct-splicing",
        "face-blend",
        "ela-cnn",
        "mesonet",
        "ela-patchnet",
        "gan-spectrum",
        "metadata",
    ):
        evaluate_models.main([name])


if __name__ == "__main__":
    main()
