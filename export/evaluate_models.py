"""Reproduce the numbers in the shipped models' cards, on the validation splits.

    python -m export.evaluate_models copy-move  # issue 11's bar (export/evaluate_tampering.py)
    python -m export.evaluate_models splicing   # the same for the splicing network
    python -m export.evaluate_models dct-splicing  # the same for the DCT-domain network
    python -m export.evaluate_models tampering-fusion  # copy-move and dct-splicing combined
    python -m export.evaluate_models face-blend  # issue 12's bar (export/evaluate_faces.py)
    python -m export.evaluate_models faces     # the scan's face finder: recall, time
    python -m export.evaluate_models ela-cnn   # CASIA v1: as-is, re-compressed, pixel F1
    python -m export.evaluate_models ela-patchnet  # the same for the cross-entropy network
    python -m export.evaluate_models srm-cnn       # the same for the noise-residual network
    python -m export.evaluate_models mesonet   # face sets: crops, face finding, authors' weights
    python -m export.evaluate_models gan-spectrum  # StyleGAN2 faces, CNNDetection families
    python -m export.evaluate_models generated  # issue 13's bar (export/evaluate_generated.py)
    python -m export.evaluate_models metadata  # every data set; double-compression calibration

Images go through scanner.evaluate, i.e. the same pipeline and detector code as `scanner scan`.
Needs only the runtime (and, for the authors' weights, the `export` extra and the .h5 files).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import select

from export import data
from scanner.config import Settings
from scanner.evaluate import Metrics, evaluate, roc_auc
from scanner.imaging import Sample, decode
from scanner.store import Database, tables

RECOMPRESS = (75, 85, 95)


def row(name: str, m: Metrics) -> str:
    na = m.not_applicable_fake + m.not_applicable_real
    return (
        f"| {name} | {m.n_fake} / {m.n_real} | {m.accuracy:.3f} | {m.roc_auc:.3f} "
        f"({m.roc_auc_low:.2f}-{m.roc_auc_high:.2f}) | "
        f"{m.tpr_at_5_fpr:.3f} | {na} |"
    )


HEADER = (
    "| data | fake / real scored | accuracy at threshold | ROC AUC (95% interval) | "
    "TPR at 5% FPR | not applicable |\n|---|---|---|---|---|---|"
)


def recompressed(items, quality: int, folder: Path) -> list[tuple[str, int]]:
    """Copies of `items` re-saved at one JPEG quality, both classes alike."""
    out = []
    for item in items:
        rgb, _ = decode(Path(item["path"]).read_bytes())
        target = folder / f"q{quality}" / f"{item['label']}_{Path(item['path']).stem}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        rgb.save(target, "JPEG", quality=quality)  # one re-save: the file a user would get
        out.append((str(target), item["label"]))
    return out


def median_ms(fn, runs: int = 5) -> float:
    """Median wall time of `fn()` in milliseconds (these machines are noisy)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def quantisation_score(path: str) -> float:
    """Baseline that looks only at the JPEG quantisation tables: their mean step size."""
    with Image.open(path) as image:
        tables = getattr(image, "quantization", None) or {0: [0]}
    return float(np.mean(tables[0]))


def judge(path: str, detector):
    """(the detector's Result, the decoded image) for one file, without a database."""
    data_bytes = Path(path).read_bytes()
    rgb, fmt = decode(data_bytes)
    return detector.predict([Sample(path, "", data_bytes, rgb, fmt)])[0], rgb


def scored(items, detector) -> list[tuple[float, int]]:
    """(score, label) of each item the detector judged."""
    out = []
    for path, label in items:
        result, _ = judge(path, detector)
        if result.score is not None:
            out.append((result.score, label))
    return out


def pixel_f1(detector, items) -> tuple[float, float, int]:
    """Mean per-image F1 of heatmap >= 0.5 against the ground-truth mask, and the same for a
    heatmap that marks every pixel (the floor any localisation must beat)."""
    scores, everything = [], []
    for item in items:
        result, rgb = judge(item["path"], detector)
        heatmap = result.heatmap
        if heatmap is None:  # nothing marked (copy-move without a pair): every pixel clean
            heatmap = np.zeros((rgb.height, rgb.width), np.uint8)
        cell = int(np.ceil(rgb.height / heatmap.shape[0]))
        # A heatmap may cover less than the image (whole patches only): the rest is "clean".
        covered = np.kron(heatmap >= 0.5, np.ones((cell, cell)))[: rgb.height, : rgb.width]
        pred = np.zeros((rgb.height, rgb.width), bool)
        pred[: covered.shape[0], : covered.shape[1]] = covered > 0
        mask = np.asarray(Image.open(item["mask"]).convert("L").resize(rgb.size)) > 127
        tp = (pred & mask).sum()
        denominator = pred.sum() + mask.sum()
        scores.append(2 * tp / denominator if denominator else 1.0)
        everything.append(2 * mask.sum() / (mask.size + mask.sum()))
    return float(np.mean(scores)), float(np.mean(everything)), len(scores)


def tampering(name: str, model_dir: Path | None = None) -> None:
    """A CASIA-trained detector: as-is, both classes re-saved, and its heatmap's pixel F1.
    `model_dir`: a candidate's model.onnx and model.json instead of the shipped ones."""
    from scanner_plugins.ela_cnn import ElaCnn
    from scanner_plugins.ela_patchnet import ElaPatchNet
    from scanner_plugins.srm_cnn import SrmCnn

    detector = {"ela-cnn": ElaCnn, "ela-patchnet": ElaPatchNet, "srm-cnn": SrmCnn}[name]()
    if model_dir:
        detector.model_dir = model_dir
    detector.load()
    val = [i for i in data.casia() if i["split"] == "validation"]
    print(f"CASIA v1 validation split: {len(val)} images, threshold {detector.threshold:.3f}\n")
    print(HEADER)
    print(row("as-is", evaluate([(i["path"], i["label"]) for i in val], [detector])[name]))
    quant_auc = {
        "as-is": roc_auc([quantisation_score(i["path"]) for i in val], [i["label"] for i in val])
    }
    with tempfile.TemporaryDirectory() as tmp:
        for quality in RECOMPRESS:
            items = recompressed(val, quality, Path(tmp))
            m = evaluate(items, [detector])[name]
            print(row(f"both classes re-saved at JPEG q{quality}", m))
            quant_auc[f"q{quality}"] = roc_auc(
                [quantisation_score(p) for p, _ in items], [y for _, y in items]
            )
    print(
        "\nQuantisation-table baseline (mean luminance step), ROC AUC: "
        + ", ".join(f"{k} {v:.3f}" for k, v in quant_auc.items())
    )
    # Outside CASIA: how often real photos of another kind are labelled fake.
    for name in ("faces_stylegan2", "faces_ciplab"):
        reals = [(i["path"], 0) for i in data.faces((name,)) if i["label"] == 0][:60]
        scores = [s for s, _ in scored(reals, detector)]
        flagged = np.mean(np.asarray(scores) >= detector.threshold)
        print(f"Real {name} images labelled fake: {flagged:.0%} of {len(scores)}")
    masked = [i for i in val if i["mask"]]
    f1, floor, n = pixel_f1(detector, masked)
    print(
        f"Pixel F1 (heatmap >= 0.5 vs mask), mean over {n} tampered validation images: {f1:.3f} "
        f"(a heatmap that marks everything: {floor:.3f})"
    )


def mesonet(authors: Path | None) -> None:
    from scanner_plugins.mesonet import Meso4, MesoInception4

    detectors = [Meso4(), MesoInception4()]
    for d in detectors:
        d.load()
    faces = [i for i in data.faces() if i["split"] == "validation"]
    print(HEADER)
    for face_crops in (True, False):
        mode = "whole image (--face-crops)" if face_crops else "faces found by the scan"
        for name in ("faces_ciplab", "faces_stylegan2"):
            items = [(i["path"], i["label"]) for i in faces if i["set"] == name]
            result = evaluate(items, detectors, Settings(face_crops=face_crops))
            for det in detectors:
                print(row(f"{det.name}, {name}, {mode}", result[det.name]))
    if not authors:
        return
    from export.mesonet_authors import convert

    reference = sorted(str(p) for p in (data.DATA / "mesonet" / "test_images").glob("*/*.jpg"))
    with tempfile.TemporaryDirectory() as tmp:
        for weights in sorted(authors.glob("*.h5")):
            target = Path(tmp) / f"{weights.stem}.onnx"
            convert(weights, target, reference)
            cls = Meso4 if weights.name.startswith("Meso4") else MesoInception4
            os.environ[cls.env_var] = str(target)
            det = cls()
            det.load()
            del os.environ[cls.env_var]
            for name in ("faces_ciplab", "faces_stylegan2"):
                items = [(i["path"], i["label"]) for i in faces if i["set"] == name]
                m = evaluate(items, [det], Settings(face_crops=True))[det.name]
                print(row(f"authors' {weights.stem} (threshold 0.5), {name}, whole image", m))


def metadata() -> None:
    """The rules are not trained, so every image of every set is held-out data for them."""
    from collections import Counter

    from scanner_plugins.metadata import Metadata

    detector = Metadata()
    sets = {
        "casia1": data.casia(),
        "faces_ciplab": [i for i in data.faces(("faces_ciplab",))],
        "faces_stylegan2": [i for i in data.faces(("faces_stylegan2",))],
        "gan_cnndetection": [
            {"path": str(p), "label": int(p.parent.name == "fake")}
            for p in sorted((data.DATA / "gan_cnndetection").glob("*/*.jpg"))
        ],
        # Real photos only: what a default scan must not flag (camera JPEGs, Kodak PNGs).
        "real photos": data.real_photos(),
    }
    print(HEADER)
    fired: dict[str, Counter] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, items in sets.items():
            db_url = f"sqlite:///{tmp}/{name}.db"
            pairs = [(i["path"], i["label"]) for i in items]
            print(row(name, evaluate(pairs, [detector], db_url=db_url)["metadata"]))
            labels = {os.path.abspath(p): y for p, y in pairs}
            db = Database(db_url)
            query = select(tables.files.c.path, tables.verdicts.c.details).join(
                tables.verdicts, tables.verdicts.c.sha256 == tables.files.c.sha256
            )
            with db.read() as conn:
                for path, details in conn.execute(query):
                    key = f"{name} {'fake' if labels[path] else 'real'}"
                    for f in json.loads(details or "{}").get("findings", []):
                        fired.setdefault(key, Counter())[f["rule"]] += 1
            db.close()
    reals = [i["path"] for i in sets["real photos"]]
    flagged = [s for s, _ in scored([(p, 0) for p in reals], detector)]
    print(
        f"\nReal photos (camera_photos and Kodak, {len(reals)}) labelled fake: "
        f"{sum(s >= detector.threshold for s in flagged)}"
    )
    print("\nRules fired (images), per set and class:")
    for key, counts in fired.items():
        print(f"- {key}: " + ", ".join(f"{rule} {n}" for rule, n in sorted(counts.items())))
    double_compression()


def double_compression(n: int = 120) -> None:
    """Calibration of the double-quantisation measure on images whose history is known: a face
    or CASIA photo shrunk to half size (which erases its earlier 8x8 grid), then saved once at
    q2, or saved at q1 and again at q2 (|q1 - q2| >= 5, qualities drawn at random)."""
    import io
    import random

    from scanner.evaluate import tpr_at_fpr
    from scanner_plugins.metadata import jpeg, rules

    def save(image, quality):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return buffer.getvalue()

    rng = random.Random(0)
    sources = sorted((data.DATA / "faces_ciplab" / "real").glob("*.jpg"))[: n // 2]
    sources += sorted((data.DATA / "casia1" / "authentic").glob("*.jpg"))[: n // 2]
    once, twice, finer_first = [], [], []
    for path in sources:
        with Image.open(path) as image:
            half = image.convert("RGB").reduce(2)
        q2 = rng.randint(70, 95)
        q1 = rng.choice([q for q in range(50, 96) if abs(q - q2) >= 5])
        measure = lambda b: jpeg.double_quantisation(jpeg.luma_coefficients(b))  # noqa: E731
        once.append(measure(save(half, q2)))
        twice.append(measure(save(Image.open(io.BytesIO(save(half, q1))), q2)))
        finer_first.append(q1 > q2)
    scores, labels = once + twice, [0] * len(once) + [1] * len(twice)
    flagged = np.asarray(twice) >= rules.DOUBLE_QUANTISATION
    finer = np.asarray(finer_first)
    print(
        f"\nDouble compression, {len(once)} images saved once vs twice: ROC AUC "
        f"{roc_auc(scores, labels):.3f}, TPR at 5% FPR {tpr_at_fpr(scores, labels):.3f}; at the "
        f"rule's threshold {rules.DOUBLE_QUANTISATION}: "
        f"{np.mean(np.asarray(once) >= rules.DOUBLE_QUANTISATION):.3f} of single saves flagged, "
        f"{flagged[~finer].mean():.3f} of doubles with q1 < q2 ({(~finer).sum()}) and "
        f"{flagged[finer].mean():.3f} with q1 > q2 ({finer.sum()}) caught; single-save "
        f"percentiles 50/95/99: {np.percentile(once, [50, 95, 99]).round(3).tolist()}"
    )


def gan_spectrum() -> None:
    from scanner_plugins.gan_spectrum import GanSpectrum

    detector = GanSpectrum()
    detector.load()
    faces = [i for i in data.faces(("faces_stylegan2",)) if i["split"] == "validation"]
    gan = [i for i in data.gan() if i["split"] == "validation"]
    print(f"Validation splits, threshold {detector.threshold:.3f}\n\n{HEADER}")
    for name, rows in (("faces_stylegan2", faces), ("gan_cnndetection", gan)):
        m = evaluate([(i["path"], i["label"]) for i in rows], [detector])[detector.name]
        print(row(name, m))
    print("\ngan_cnndetection validation images per family (too few for an AUC each):")
    for family in sorted({i["family"] for i in gan}):
        pairs = scored([(i["path"], i["label"]) for i in gan if i["family"] == family], detector)
        fake = [s >= detector.threshold for s, y in pairs if y == 1]
        real = [s < detector.threshold for s, y in pairs if y == 0]
        print(f"- {family}: {sum(fake)}/{len(fake)} fakes and {sum(real)}/{len(real)} reals right")
    for name, folder in (
        ("casia1 authentic", "casia1/authentic"),
        ("faces_ciplab real", "faces_ciplab/real"),
    ):
        pairs = scored(
            [(str(p), 0) for p in sorted((data.DATA / folder).glob("*.jpg"))[:100]], detector
        )
        flagged = np.mean([s >= detector.threshold for s, _ in pairs])
        print(f"Real {name} photos labelled fake: {flagged:.0%} of {len(pairs)}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "model",
        choices=[
            "copy-move",
            "splicing",
            "dct-splicing",
            "tampering-fusion",
            "face-blend",
            "faces",
            "ela-cnn",
            "ela-patchnet",
            "srm-cnn",
            "mesonet",
            "metadata",
            "gan-spectrum",
            "generated",
        ],
    )
    parser.add_argument(
        "--authors-weights",
        type=Path,
        default=data.DATA / "mesonet" / "weights",
        help="folder of the MesoNet authors' .h5 files to compare with",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        help="ela-cnn, ela-patchnet, srm-cnn, generated, splicing, dct-splicing, face-blend: "
        "the model.onnx and model.json to evaluate (tampering-fusion: dct-splicing's)",
    )
    parser.add_argument(
        "--logo",
        type=Path,
        nargs="*",
        default=[],
        help="generated: folders of models trained with --leave-out, for leave-one-out AUCs",
    )
    args = parser.parse_args(argv)
    if args.model in ("copy-move", "splicing", "dct-splicing"):
        from export.evaluate_tampering import report
        from scanner_plugins.copy_move import CopyMove
        from scanner_plugins.dct_splicing import DctSplicing
        from scanner_plugins.splicing import Splicing

        kinds = {"copy-move": CopyMove, "splicing": Splicing, "dct-splicing": DctSplicing}
        detector = kinds[args.model]()
        if args.model_dir:
            detector.model_dir = args.model_dir
        detector.load()
        report(detector, copy_moves_only=args.model == "copy-move")
    elif args.model == "tampering-fusion":
        from export.evaluate_tampering import fusion

        fusion(args.model_dir)
    elif args.model == "face-blend":
        from export.evaluate_faces import report as face_report
        from scanner_plugins.face_blend import FaceBlend

        detector = FaceBlend()
        if args.model_dir:
            detector.model_dir = args.model_dir
        detector.load()
        face_report(detector)
    elif args.model == "faces":
        from export.evaluate_faces import finder

        finder()
    elif args.model in ("ela-cnn", "ela-patchnet", "srm-cnn"):
        tampering(args.model, args.model_dir)
    elif args.model == "metadata":
        metadata()
    elif args.model == "gan-spectrum":
        gan_spectrum()
    elif args.model == "generated":
        from export.evaluate_generated import report as generated_report
        from scanner_plugins.generated import Generated

        detector = Generated()
        if args.model_dir:
            detector.model_dir = args.model_dir
        detector.load()
        generated_report(detector, args.logo)
    else:
        mesonet(args.authors_weights if args.authors_weights.is_dir() else None)


if __name__ == "__main__":
    main()
