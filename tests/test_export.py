"""Keras vs ONNX parity for every shipped model, and the MesoNet authors' weights converted and
run through the scanner. Needs the `export` extra (TensorFlow) and ../shared/data."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="needs the export extra")
from export import models  # noqa: E402
from export.data import DATA, casia, faces  # noqa: E402
from export.onnx_export import PARITY_TOLERANCE, check_parity, load_weights  # noqa: E402
from scanner.config import Settings  # noqa: E402
from scanner.faces import crop_face  # noqa: E402
from scanner.imaging import decode  # noqa: E402
from scanner.pipeline import Pipeline  # noqa: E402
from scanner.store import Database, queries  # noqa: E402
from scanner_plugins.mesonet import Meso4  # noqa: E402

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"needs the shared data at {DATA}")
REFERENCE = sorted(str(p) for p in (DATA / "mesonet" / "test_images").glob("*/*.jpg"))


@pytest.mark.parametrize(
    "folder, build", [("ela_cnn", models.ela_fcn), ("srm_cnn", models.srm_fcn)]
)
def test_tampering_fcn_onnx_matches_keras_on_real_images(folder, build):
    plugin = importlib.import_module(f"scanner_plugins.{folder}")
    width = json.loads((PLUGINS / folder / "model.json").read_text())["width"]
    model = load_weights(build(width), PLUGINS / folder / "weights.npz")
    onnx = (PLUGINS / folder / "model.onnx").read_bytes()
    images = [i for i in casia() if i["split"] == "validation"][:6]
    inputs = [plugin.network_input(decode(Path(i["path"]).read_bytes())[0]) for i in images]
    for shape in {x.shape for x in inputs}:
        worst = check_parity(model, onnx, np.stack([x for x in inputs if x.shape == shape]))
        assert worst <= PARITY_TOLERANCE


def test_splicing_onnx_matches_keras_on_real_images():
    from export.train_splicing import SIZE, build
    from scanner_plugins.splicing import network_input

    model = load_weights(build(), PLUGINS / "splicing" / "weights.npz")
    onnx = (PLUGINS / "splicing" / "model.onnx").read_bytes()
    images = [decode(Path(i["path"]).read_bytes())[0] for i in casia()[::97]]
    camera = sorted((DATA / "camera_photos" / "real").glob("*.jpg"))[0]
    images.append(decode(camera.read_bytes())[0])  # shrunk to 384 px by network_input
    inputs = [network_input(rgb) for rgb in images]
    assert any(x.shape[:2] == (SIZE[1], SIZE[0]) for x in inputs)
    for shape in {x.shape for x in inputs}:
        worst = check_parity(model, onnx, np.stack([x for x in inputs if x.shape == shape]))
        assert worst <= PARITY_TOLERANCE


def test_dct_splicing_onnx_matches_keras_on_real_jpegs():
    from export.train_dct_splicing import build
    from scanner_plugins.dct_splicing import tiles

    phases = json.loads((PLUGINS / "dct_splicing" / "model.json").read_text())["grid_phases"]
    model = load_weights(build(phases), PLUGINS / "dct_splicing" / "weights.npz")
    onnx = (PLUGINS / "dct_splicing" / "model.onnx").read_bytes()
    files = [Path(i["path"]).read_bytes() for i in casia()[::97]]
    files.append(sorted((DATA / "camera_photos" / "real").glob("*.jpg"))[0].read_bytes())
    batches = [np.stack(tiles(raw, phases)[0]) for raw in files]
    for batch in batches:
        assert check_parity(model, onnx, batch) <= PARITY_TOLERANCE


def test_face_blend_onnx_matches_keras_on_real_faces():
    from PIL import Image

    from export.train_face_blend import build
    from scanner_plugins.face_blend import network_input

    model = load_weights(build(), PLUGINS / "face_blend" / "weights.npz")
    onnx = (PLUGINS / "face_blend" / "model.onnx").read_bytes()
    crops = [Image.open(i["path"]).convert("RGB") for i in faces()[::150]]
    assert len(crops) >= 8
    worst = check_parity(model, onnx, np.stack([network_input(c) for c in crops]))
    assert worst <= PARITY_TOLERANCE


def test_generated_onnx_matches_keras_on_real_and_generated_pictures():
    from export.data import generated_images, load_rgb
    from export.train_generated import shipped
    from scanner_plugins.generated import crops

    model = shipped(PLUGINS / "generated")
    onnx = (PLUGINS / "generated" / "model.onnx").read_bytes()
    pictures = [load_rgb(i) for i in generated_images()[::300]]
    batch = np.stack([c for rgb in pictures for c in crops(rgb)])
    assert len(batch) >= 8
    assert check_parity(model, onnx, batch) <= PARITY_TOLERANCE


def test_a_patch_classifier_scores_a_picture_by_the_mean_of_its_patches():
    """`train_generated --stage N` (the card's patch experiment): the model trained gives one
    probability per patch, the model shipped their mean, and the trunk keeps ImageNet's stem."""
    from export.train_generated import pretrained

    fitted, model = pretrained(stage=2)
    assert fitted.output.shape[1:] == (28, 28, 1)  # 224 px at 1/8: a patch per 8 px
    pictures = np.random.default_rng(0).uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
    patches = fitted(pictures).numpy()
    assert np.allclose(model(pictures).numpy()[:, 0], patches.mean(axis=(1, 2, 3)), atol=1e-6)
    assert not fitted.get_layer("_conv_stem").trainable


def test_npr_input_is_each_pixel_minus_its_cells_first_and_exports_with_parity(tmp_path):
    """`train_generated --npr` (the card's residual runs): the network sees each pixel minus
    the top-left pixel of its 2x2 cell, scaled around the trunk's mean, in the ONNX graph too;
    its stem is trained."""
    from export.efficientnet import MEAN
    from export.onnx_export import to_onnx
    from export.train_generated import NPR_GAIN, NeighbourResidual, pretrained

    pictures = np.random.default_rng(1).uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
    rows, cols = np.arange(224) // 2 * 2, np.arange(224) // 2 * 2
    anchors = pictures[:, rows][:, :, cols]
    expected = (pictures - anchors) * NPR_GAIN + MEAN
    assert np.allclose(NeighbourResidual()(pictures).numpy(), expected, atol=1e-3)
    fitted, model = pretrained(npr=True)
    assert fitted.get_layer("_conv_stem").trainable
    assert check_parity(model, to_onnx(model, tmp_path / "npr.onnx"), pictures) <= PARITY_TOLERANCE


def test_generated_faces_weigh_as_much_as_real_faces_in_training():
    """`train_generated`'s face balance (the default since generated 1.1.0): without StyleGAN2's
    fakes the few generated faces left (StarGAN, deepfake) are weighted up to the real faces'
    total; other pictures stay at 1."""
    from export.train_generated import face_balance

    items = (
        [{"family": "ciplab", "label": 0}] * 6
        + [{"family": "stylegan2", "label": 0}] * 4
        + [{"family": "stargan", "label": 1}] * 2
        + [{"family": "sd15", "label": 1}] * 3
        + [{"family": "casia", "label": 0}] * 5
    )
    weights = face_balance(items)
    assert weights[10:12].tolist() == [5.0, 5.0]  # 10 real faces / 2 generated ones
    assert (np.delete(weights, [10, 11]) == 1.0).all()
    assert (face_balance(items[:10]) == 1.0).all()  # no generated face: nothing to weigh


def test_simulated_generator_pairs_differ_only_in_how_pixels_were_made_up():
    """`--simulated`'s pairs (export/simulated_generator.py): the fake and its control come from
    the same shrunk picture at the picture's size; the control is a plain resampling of it, and a
    random transposed convolution leaves its checkerboard on a flat picture."""
    from PIL import Image

    from export import simulated_generator as sim

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 64, dtype=np.float32)
    picture = Image.fromarray(
        np.stack(
            [np.add.outer(ramp, ramp) / 2, np.tile(ramp, (64, 1)), np.full((64, 64), 90.0)], -1
        )
        .round()
        .astype(np.uint8)
    )
    for seed in range(4):
        fake, control = sim.simulated_pair(picture, np.random.default_rng(seed))
        again, _ = sim.simulated_pair(picture, np.random.default_rng(seed))
        assert fake.size == control.size == picture.size
        assert np.array_equal(np.asarray(fake), np.asarray(again))
        low = [picture.resize((64 // f, 64 // f), Image.Resampling.BOX) for f in (2, 4)]
        plain = [np.asarray(p.resize((64, 64), m)) for p in low for m in sim.PLAIN]
        assert any(np.array_equal(np.asarray(control), p) for p in plain)
        assert not any(np.array_equal(np.asarray(fake), p) for p in plain)
    flat = np.full((16, 16, 3), 128, np.float32)
    up = sim._transposed(flat, rng)[4:-4, 4:-4, 0]  # away from the border's zeros
    phases = [up[i::2, j::2].mean() for i in (0, 1) for j in (0, 1)]
    assert max(phases) - min(phases) > 0.1  # a 2-pixel period a plain filter never makes
    assert up[0::2, 0::2].std() < 1e-3  # and each phase is flat: a pattern, not noise


def test_efficientnet_weights_are_mapped_by_name_and_classify_a_photo():
    """The torch-free reader and the Keras EfficientNet-Lite0 together: every tensor read, and
    Kodak's photo of two macaws classified as ImageNet class 88, 'macaw'."""
    from PIL import Image

    from export import efficientnet
    from export.torch_legacy import efficientnet_lite0

    state = efficientnet_lite0()
    assert len(state) == 296 and sum(v.size for v in state.values()) == 4_694_073
    model = efficientnet.imagenet_classifier()
    assert efficientnet.load_pretrained(model, state) == 99  # every conv, bn and dense layer
    photo = Image.open(DATA / "real_lossless" / "real" / "kodim23.png").convert("RGB")
    logits = model(np.asarray(photo.resize((224, 224)), np.float32)[None]).numpy()[0]
    assert int(np.argmax(logits)) == 88


@pytest.mark.parametrize(
    "name, build", [("meso4", models.meso4), ("mesoinception4", models.meso_inception4)]
)
def test_meso_onnx_matches_keras_on_real_faces(name, build):
    model = load_weights(build(), PLUGINS / "mesonet" / f"{name}.weights.npz")
    onnx = (PLUGINS / "mesonet" / f"{name}.onnx").read_bytes()
    batch = np.stack(
        [
            np.asarray(crop_face(decode(Path(i["path"]).read_bytes())[0]), dtype=np.float32) / 255
            for i in faces()[::200]
        ]
    )
    assert check_parity(model, onnx, batch) <= PARITY_TOLERANCE


def test_authors_meso4_weights_become_a_detector_that_reproduces_their_outputs(tmp_path):
    """The documented command, then a scan with the converted model: P(fake) = 1 - P(real),
    their reference P(real) being df00204 0.041, df01254 0.049, real00240 0.990, real00772 0.998."""
    target = tmp_path / "meso4-df.onnx"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "export.mesonet_authors",
            str(DATA / "mesonet" / "weights" / "Meso4_DF.h5"),
            str(target),
        ],
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    os.environ["SCANNER_MESO4_MODEL"] = str(target)
    try:
        detector = Meso4()
        detector.load()
        db = Database(f"sqlite:///{tmp_path / 'authors.db'}")
        Pipeline(db, [detector], Settings(face_crops=True)).scan(REFERENCE)
        rows = {Path(r["path"]).stem: r for r in queries.verdicts(db, queries.ResultFilter())}
    finally:
        del os.environ["SCANNER_MESO4_MODEL"]
    expected = {"df00204": 0.959, "df01254": 0.951, "real00240": 0.010, "real00772": 0.002}
    assert {k: round(v["score"], 3) for k, v in rows.items()} == expected
    assert {r["detector_version"] for r in rows.values()} != {"1.0.0"}  # told apart


def test_authors_mesoinception_weights_convert_with_parity(tmp_path):
    from export.mesonet_authors import convert

    worst = convert(
        DATA / "mesonet" / "weights" / "MesoInception_DF.h5", tmp_path / "mi.onnx", REFERENCE
    )
    assert worst <= PARITY_TOLERANCE
