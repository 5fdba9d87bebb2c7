"""The measurements in the face-blend detector's model card (issue 12's bar).

    python -m export.evaluate_models face-blend

1. Validation splits of faces_ciplab (Photoshop composites: never seen in training) and
   faces_stylegan2, each face crop whole (`--face-crops`) and with faces found by the scan:
   as-is, both classes re-saved at q85, both shrunk to 50% and re-saved at q85 (ROC AUC, TPR
   at the shipped threshold, FPR on the held-out half of the validation reals).
2. Pairs: each validation real face and the same face edited (another validation face's
   inner face blended in, colour-matched: export/self_blend.face_swap); the share of pairs
   whose edited face scores higher, for this detector and for Meso-4 / MesoInception-4.
3. Cost per image: finding and scoring the face of a 12-megapixel portrait against decoding it.

    python -m export.evaluate_models faces  # the face finder: recall per set and class, time
Everything goes through scanner.evaluate (the scan pipeline) but the pairs (detector.predict
on the same Sample type the pipeline builds).
"""

from __future__ import annotations

import functools
import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from export import data
from export.evaluate_models import median_ms
from export.self_blend import face_swap
from export.training import jpeg_roundtrip
from scanner.config import Settings
from scanner.evaluate import evaluate
from scanner.imaging import Sample, decode

SETS = ("faces_ciplab", "faces_stylegan2")


def _variant(items: list[dict], how: str, folder: Path) -> list[tuple[str, int]]:
    """(path, label): as-is, re-saved at q85 (`q85`), or shrunk to 50% then q85 (`shrink`)."""
    if how == "as-is":
        return [(i["path"], i["label"]) for i in items]
    out = []
    for n, item in enumerate(items):
        rgb = Image.open(item["path"]).convert("RGB")
        if how == "shrink":
            rgb = rgb.resize((rgb.width // 2, rgb.height // 2), Image.Resampling.BICUBIC)
        target = folder / how / f"{n:05d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        rgb.save(target, "JPEG", quality=85)  # one re-save: the file a user would get
        out.append((str(target), item["label"]))
    return out


def _score(detector, rgb: Image.Image) -> float | None:
    buffer = io.BytesIO()
    rgb.save(buffer, "PNG")
    sample = Sample("x", "", buffer.getvalue(), rgb, "PNG", face_crops=True)
    return detector.predict([sample])[0].score


def pairs(detectors, seed: int = 20261125) -> tuple[dict[str, float], int]:
    """Share of (real, edited) validation pairs where the edited face scores higher, per
    detector; and the number of pairs."""
    reals = [i for i in data.faces() if i["label"] == 0 and i["split"] == "validation"]
    rng = np.random.default_rng(seed)
    higher = {d.name: [] for d in detectors}
    for item in reals:
        donor = reals[int(rng.integers(len(reals)))]
        if donor is item:
            continue
        real = Image.open(item["path"]).convert("RGB")
        edited = face_swap(real, Image.open(donor["path"]).convert("RGB"), rng)
        real, edited = jpeg_roundtrip(real, 90), jpeg_roundtrip(edited, 90)  # one history
        for d in detectors:
            higher[d.name].append(_score(d, edited) > _score(d, real))
    shares = {name: float(np.mean(v)) for name, v in higher.items()}
    return shares, len(next(iter(higher.values())))


def _portrait() -> bytes:
    """A 12-megapixel portrait: a validation face enlarged onto a 3000x4000 canvas, JPEG."""
    face = Image.open(next(i["path"] for i in data.faces() if i["label"] == 0)).convert("RGB")
    canvas = Image.new("RGB", (3000, 4000), (90, 110, 130))
    canvas.paste(face.resize((1800, 1800), Image.Resampling.BICUBIC), (600, 900))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def cost(detector) -> str:
    """Milliseconds to find and score the face of a 12-megapixel portrait (a validation face
    enlarged onto a 3000x4000 canvas), against decoding it; median of 5, one process."""
    raw = _portrait()
    rgb, fmt = decode(raw)
    detector.predict([Sample("x", "", raw, rgb, fmt)])  # the first call makes the session
    found = median_ms(lambda: Sample("x", "", raw, rgb, fmt).faces())
    both = median_ms(lambda: detector.predict([Sample("x", "", raw, rgb, fmt)]))
    return (
        f"12 MP portrait: face search {found:.0f} ms, search and detector {both:.0f} ms; "
        f"decoding it {median_ms(lambda: decode(raw)):.0f} ms"
    )


def report(detector) -> None:
    from scanner_plugins.mesonet import Meso4, MesoInception4

    name = detector.name
    val = [i for i in data.faces() if i["split"] == "validation"]
    calibration = {i["path"] for i in data.face_calibration()}
    print(f"Threshold {detector.threshold:.4f}.\n")
    print(
        "| data | faces | fake / real scored (n/a) | ROC AUC (95% interval) | TPR at threshold | "
        "FPR, held-out reals |\n|---|---|---|---|---|---|"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for set_name in SETS:
            items = [i for i in val if i["set"] == set_name]
            for how in ("as-is", "q85", "shrink"):
                scored = _variant(items, how, Path(tmp) / set_name)
                held_out = [
                    s for s, i in zip(scored, items, strict=True) if i["path"] not in calibration
                ]
                for crops in (True, False):
                    settings = Settings(face_crops=crops)
                    m = evaluate(scored, [detector], settings)[name]
                    reals = [s for s in held_out if s[1] == 0]
                    fpr = evaluate(reals, [detector], settings)[name]
                    label = {"as-is": "as-is", "q85": "re-saved q85", "shrink": "50%, q85"}[how]
                    na = m.not_applicable_fake + m.not_applicable_real
                    print(
                        f"| {set_name} validation, {label} | "
                        f"{'whole crop' if crops else 'found'} | {m.n_fake} / {m.n_real} ({na}) | "
                        f"{m.roc_auc:.3f} ({m.roc_auc_low:.2f}-{m.roc_auc_high:.2f}) | "
                        f"{m.tpr:.3f} | {fpr.fpr:.3f} of {fpr.n_real} |"
                    )
    others = [Meso4(), MesoInception4()]
    for d in others:
        d.load()
    shares, n = pairs([detector, *others])
    print(
        f"\nPairs (validation real face, the same face edited), {n} pairs: "
        + ", ".join(f"{k} scores the edit higher in {v:.1%}" for k, v in shares.items())
    )
    print(f"\nCost per image, one process: {cost(detector)}")


def _haar_faces(rgb: Image.Image) -> int:
    """The face finder this project used before MTCNN (OpenCV's frontal Haar cascade, scale
    1.1, 5 neighbours, on a grey copy of at most 400 px, faces of at least 24 px there), kept
    here only as the baseline the finder is compared with in the same run."""
    scale = min(1.0, 400 / max(rgb.size))
    grey = rgb.convert("L").resize((round(rgb.width * scale), round(rgb.height * scale)))
    side = max(24, round(40 * scale))
    found = _haar_cascade().detectMultiScale(np.asarray(grey), 1.1, 5, minSize=(side, side))
    return len(found)


@functools.cache
def _haar_cascade():
    import cv2

    return cv2.CascadeClassifier(
        str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml")
    )


def finder() -> None:
    """Issue 12's face-finding bar: the share of every face set's images, per class, in which
    the scan's finder (scanner.faces.find_faces) finds a face; how often it finds one in
    photos of other kinds (people appear in some: not all are false); the time per image;
    the Haar cascade it replaced, measured in the same run."""
    import time

    from scanner.faces import find_faces

    groups = [(f"{i['set']} {'fake' if i['label'] else 'real'}", i["path"]) for i in data.faces()]
    groups += [(f"{i['set']} (photos)", i["path"]) for i in data.real_photos()]
    groups += [("casia1 authentic (photos)", i["path"]) for i in data.casia() if not i["label"]]
    print("| images | n | face found (MTCNN) | ms per image | face found (Haar) | ms per image |")
    print("|---|---|---|---|---|---|")
    for name in dict.fromkeys(g for g, _ in groups):
        paths = [p for g, p in groups if g == name]
        found = {"mtcnn": 0, "haar": 0}
        spent = {"mtcnn": 0.0, "haar": 0.0}
        for path in paths:
            rgb, _ = decode(Path(path).read_bytes())
            for key, fn in (("mtcnn", find_faces), ("haar", _haar_faces)):
                start = time.perf_counter()
                found[key] += bool(fn(rgb))
                spent[key] += time.perf_counter() - start
        n = len(paths)
        print(
            f"| {name} | {n} | {found['mtcnn'] / n:.1%} | {1000 * spent['mtcnn'] / n:.0f} | "
            f"{found['haar'] / n:.1%} | {1000 * spent['haar'] / n:.0f} |"
        )
    rgb, _ = decode(_portrait())
    print(
        f"\n12 MP portrait, median of 5: MTCNN {median_ms(lambda: find_faces(rgb)):.0f} ms, "
        f"Haar {median_ms(lambda: _haar_faces(rgb)):.0f} ms"
    )
