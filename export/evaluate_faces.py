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
Everything goes through scanner.evaluate (the scan pipeline) but the pairs (detector.predict
on the same Sample type the pipeline builds).
"""

from __future__ import annotations

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


def cost(detector) -> str:
    """Milliseconds to find and score the face of a 12-megapixel portrait (a validation face
    enlarged onto a 3000x4000 canvas), against decoding it; median of 5, one process."""
    face = Image.open(next(i["path"] for i in data.faces() if i["label"] == 0)).convert("RGB")
    canvas = Image.new("RGB", (3000, 4000), (90, 110, 130))
    canvas.paste(face.resize((1800, 1800), Image.Resampling.BICUBIC), (600, 900))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=90)
    raw = buffer.getvalue()

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
        "| data | faces | fake / real scored (n/a) | ROC AUC | TPR at threshold | "
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
                        f"{m.roc_auc:.3f} | {m.tpr:.3f} | {fpr.fpr:.3f} of {fpr.n_real} |"
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
