"""The shipped detectors, run through the scanner on real images from ../shared/data.

The margins sit well below what the model cards report on the full validation splits, so that
a small sample passes by skill, not luck, while a broken model or preprocessing fails."""

from pathlib import Path

import pytest
from sqlalchemy import select

from export import data  # listing and splitting only: no TensorFlow
from scanner.config import Settings
from scanner.detectors import discover
from scanner.evaluate import evaluate
from scanner.pipeline import Pipeline, iter_files
from scanner.store import Database, tables

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BUILTINS = [
    "copy-move",
    "ela-cnn",
    "ela-patchnet",
    "face-blend",
    "gan-spectrum",
    "meso4",
    "mesoinception4",
    "metadata",
    "provenance",
    "splicing",
    "srm-cnn",
]
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"needs the shared data at {DATA}")


def sample(items, per_class):
    return [
        (i["path"], i["label"])
        for label in (0, 1)
        for i in [x for x in items if x["label"] == label][:per_class]
    ]


@pytest.fixture(scope="module")
def detectors():
    plugins = {p.name: p for p in discover(["ela-cnn", "meso4", "mesoinception4"])}
    assert all(p.loaded for p in plugins.values()), [p.error for p in plugins.values()]
    return {name: p.detector for name, p in plugins.items()}


def test_builtins_are_registered_like_third_party_plugins():
    info = {p.name: p.describe() for p in discover(BUILTINS)}
    assert set(info) == set(BUILTINS)
    assert {i["package"].split()[0] for i in info.values()} == {"scanner"}
    assert all(
        len(i["model_hash"]) == 64 for n, i in info.items() if n not in ("metadata", "provenance")
    )
    # The weak ones run only when named (their model cards say why).
    off = {n for n, i in info.items() if i["default"] == "off"}
    assert off == {
        *("ela-cnn", "ela-patchnet", "face-blend", "gan-spectrum", "meso4", "mesoinception4"),
        *("splicing", "srm-cnn"),
    }


def test_ela_cnn_separates_casia_validation_images(detectors):
    val = [i for i in data.casia() if i["split"] == "validation"]
    metrics = evaluate(sample(val, 40), [detectors["ela-cnn"]])["ela-cnn"]
    assert metrics.n_fake == metrics.n_real == 40
    assert metrics.roc_auc >= 0.70, metrics  # 0.88 on this sample, 0.70 on all 240


@pytest.mark.parametrize("name", ["meso4", "mesoinception4"])
def test_meso_separates_stylegan2_validation_faces(detectors, name):
    val = [i for i in data.faces() if i["split"] == "validation" and i["set"] == "faces_stylegan2"]
    metrics = evaluate(sample(val, 40), [detectors[name]], Settings(face_crops=True))[name]
    assert metrics.n_fake == metrics.n_real == 40
    assert metrics.roc_auc >= 0.90, metrics  # 1.0 on this sample, 1.0 on all 206


def test_no_face_is_not_applicable_and_faces_are_boxed(detectors, tmp_path):
    casia = DATA / "casia1" / "authentic" / "Au_arc_0001.jpg"
    face = sorted((DATA / "faces_stylegan2" / "real").glob("*.jpg"))[0]
    db = Database(f"sqlite:///{tmp_path / 'faces.db'}")
    Pipeline(db, [detectors["meso4"]], Settings()).scan([str(casia), str(face)])
    with db.read() as conn:
        verdicts = list(conn.execute(select(tables.verdicts)))
    assert len(verdicts) == 2
    skipped = [v for v in verdicts if v.label == "not-applicable"]
    boxed = [v for v in verdicts if v.label != "not-applicable"]
    assert len(skipped) == 1 and skipped[0].reason == "no face found" and skipped[0].score is None
    assert len(boxed) == 1 and '"box"' in boxed[0].details


def test_a_scan_of_a_mixed_folder_stores_verdicts_from_the_builtins(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for source in [
        *sorted((DATA / "casia1" / "tampered").glob("*.jpg"))[:3],
        *sorted((DATA / "faces_ciplab" / "fake").glob("*.jpg"))[:3],
    ]:
        (folder / source.name).write_bytes(source.read_bytes())
    plugins = discover(BUILTINS)
    db = Database(f"sqlite:///{tmp_path / 'mixed.db'}")
    stats = Pipeline(db, [p.detector for p in plugins], Settings()).scan(iter_files([folder]))
    assert stats.scanned == 6 and stats.detector_errors == 0
    with db.read() as conn:
        verdicts = list(conn.execute(select(tables.verdicts)))
    by_detector = {}
    for v in verdicts:
        by_detector.setdefault(v.detector, []).append(v)
    assert {name: len(v) for name, v in by_detector.items()} == {name: 6 for name in BUILTINS}
    for name in ("ela-cnn", "ela-patchnet", "srm-cnn", "splicing"):
        assert all(v.heatmap_png for v in by_detector[name]), name
    # copy-move marks the regions it matched: a heatmap exactly where it flags the image.
    assert all(bool(v.heatmap_png) == (v.label == "fake") for v in by_detector["copy-move"])
    # CASIA's tampered files say Photoshop saved them; the ciplab files carry no metadata.
    labels = sorted(v.label for v in by_detector["metadata"])
    assert labels == ["fake"] * 3 + ["not-applicable"] * 3
