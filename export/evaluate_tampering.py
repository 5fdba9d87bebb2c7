"""The measurements in the copy-move and splicing detectors' model cards (issue 11's bar).

    python -m export.evaluate_models copy-move
    python -m export.evaluate_models splicing

1. CASIA v1's validation split (by source photo), all tampered against authentic: as-is and
   with both classes re-saved at q75, q85, q95 (ROC AUC, accuracy, TPR at 5% FPR).
2. True-positive rate at the shipped threshold on the validation copy-moves (`Sp_S`) and
   splices (`Sp_D`): as-is, re-saved at q85, and shrunk to 75% then re-saved at q85.
3. False-positive rate at the threshold on real photos the threshold was not chosen on: the
   held-out halves of camera_photos (as-is, and shrunk to 60% and re-saved at q80) and of the
   Kodak scans (saved at q75, q85, q95), the face sets' validation reals, CASIA's validation
   authentic photos; and text screenshots made here (`text_screens`: not photos, but what
   users send most after photos, and where repeated words are pixel-identical copies).
4. Pixel F1 of the heatmap against CASIA's masks; 5. cost per image against decoding.
Everything goes through scanner.evaluate (the scan pipeline, worker processes included).
"""

from __future__ import annotations

import io
import random
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from export import data
from export.evaluate_models import HEADER, median_ms, pixel_f1, row
from export.training import jpeg_roundtrip
from scanner.evaluate import evaluate
from scanner.imaging import Sample, decode


def _save(rgb: Image.Image, target: Path, quality: int | None) -> str:
    target.parent.mkdir(parents=True, exist_ok=True)
    if quality is None:
        rgb.save(target.with_suffix(".png"))
        return str(target.with_suffix(".png"))
    # The file itself at `quality` (not a decoded copy saved again at q100): detectors that
    # read the JPEG's coefficients must see the re-save's own tables.
    rgb.save(target.with_suffix(".jpg"), "JPEG", quality=quality)
    return str(target.with_suffix(".jpg"))


def variants(items: list[dict], how: str, folder: Path) -> list[tuple[str, int]]:
    """(path, label) of each item as-is, re-saved at `qNN`, or shrunk to 75% then q85
    (`resize`), or shrunk to 60% then q80 (`shrink`), or saved at q75 and then at q85
    (`q75q85`); both classes alike."""
    if how == "as-is":
        return [(i["path"], i["label"]) for i in items]
    out = []
    for n, item in enumerate(items):
        rgb, _ = decode(Path(item["path"]).read_bytes())
        quality = {"resize": 85, "shrink": 80, "q75q85": 85}.get(how) or int(how[1:])
        if how == "q75q85":
            rgb = jpeg_roundtrip(rgb, 75)
        if how in ("resize", "shrink"):
            scale = 0.75 if how == "resize" else 0.6
            rgb = rgb.resize(
                (round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.BICUBIC
            )
        target = folder / how / f"{n:05d}_{Path(item['path']).stem}"
        out.append((_save(rgb, target, quality), item["label"]))
    return out


def held_out_reals(folder: Path) -> dict[str, list[tuple[str, int]]]:
    photos = [i for i in data.real_photos() if i["split"] == "held-out"]
    camera = [i for i in photos if i["set"] == "camera_photos"]
    kodak = [i for i in photos if i["set"] == "real_lossless"]
    faces = [i for i in data.faces() if i["label"] == 0 and i["split"] == "validation"]
    casia = [i for i in data.casia() if i["label"] == 0 and i["split"] == "validation"]
    return {
        f"camera_photos held out ({len(camera)} photos), as-is": variants(camera, "as-is", folder),
        "camera_photos held out, shrunk to 60% and re-saved at q80": variants(
            camera, "shrink", folder
        ),
        f"Kodak scans held out ({len(kodak)}), saved at q75, q85, q95": sum(
            (variants(kodak, f"q{q}", folder / f"k{q}") for q in (75, 85, 95)), []
        ),
        "real faces, validation split (faces_ciplab, faces_stylegan2)": variants(
            faces, "as-is", folder
        ),
        "CASIA v1 authentic, validation split": variants(casia, "as-is", folder),
        "text screenshots made here (`text_screens`; not photos)": text_screens(folder / "screens"),
    }


TEXT_SOURCES = ("README.md", "docs/architecture.md", "docs/speed.md", "docs/plugins.md")
# The documents as they were at this commit: read from the working tree, the screenshots
# changed with every edit of the README, and figures of two runs could not be compared
# (copy-move 1.6.0 flagged none of the screenshots of 2026-12-07's first documents and 2 of
# those of the session's last commit, 8b6127b, which is pinned here).
TEXT_COMMIT = "8b6127b"


def text_screens(folder: Path, count: int = 48, seed: int = 0) -> list[tuple[str, int]]:
    """Screenshots of text, labelled real: lines of this repository's own documents (never one
    line twice, but words and phrases repeat as they do in any text) in Pillow's built-in font
    at 12-28 px, dark on four light backgrounds or light on a dark one, at four screen sizes,
    saved as PNG or JPEG q90 or q75. Made the same way on every run, from the documents at
    TEXT_COMMIT (git must have the repository's history)."""
    root = Path(__file__).resolve().parent.parent
    documents = [
        subprocess.run(
            ["git", "show", f"{TEXT_COMMIT}:{name}"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        for name in TEXT_SOURCES
    ]
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for n in range(count):
        lines = [line for line in rng.choice(documents) if line.strip()]
        start = rng.randrange(max(1, len(lines) - 100))
        lines = list(dict.fromkeys(line[: rng.randint(70, 130)] for line in lines[start:]))
        size = rng.choice([12, 14, 16, 18, 22, 28])
        width, height = rng.choice([(1280, 720), (1080, 1920), (1920, 1080), (800, 600)])
        background = rng.choice([(255, 255, 255), (30, 30, 30), (245, 240, 230), (230, 240, 255)])
        ink = (20, 20, 20) if sum(background) > 300 else (230, 230, 230)
        screen = Image.new("RGB", (width, height), background)
        shown = lines[: int((height - 40) / (size * 1.35))]
        font = ImageFont.load_default(size=size)
        ImageDraw.Draw(screen).multiline_text(
            (20, 20), "\n".join(shown), fill=ink, font=font, spacing=int(size * 0.35)
        )
        quality = rng.choice([None, 90, 75])
        out.append((_save(screen, folder / f"screen{n:03d}", quality), 0))
    return out


def camera_copy_moves(
    folder: Path, share: float, side: int | None, seed: int = 0, turned: bool = False
) -> list[tuple[str, int]]:
    """Copy-moves made in camera photos, labelled fake: in each of camera_photos' photos (as
    they come, or shrunk so the longer side is `side`), a textured region (grey standard
    deviation at least 10; a flat patch copied is invisible and harmless) of about `share` of
    the picture, an irregular polygon with a soft edge, is pasted at least 1.1 times its size
    away, then the photo is saved at q90. CASIA's copy-moves are 384x256 px (their regions
    median 5.5% of the picture); these show whether what the card measures there holds at
    other sizes. `turned`: the region is also rotated by 10-45 degrees either way and scaled
    by 0.9-1.1 before it is pasted (what SIFT's affine fit is for; the blocks see only moved
    copies). Hosts from both halves of camera_photos: this measures catches, not false
    alarms. Made the same way on every run."""
    out = []
    for n, item in enumerate(i for i in data.real_photos(1.0) if i["set"] == "camera_photos"):
        rgb, _ = decode(Path(item["path"]).read_bytes())
        if side and max(rgb.size) > side:
            scale = side / max(rgb.size)
            size = (round(rgb.width * scale), round(rgb.height * scale))
            rgb = rgb.resize(size, Image.Resampling.LANCZOS)
        rng = np.random.default_rng([seed, n])
        w, h = rgb.size
        length = np.sqrt(share * w * h)
        rw, rh = length * rng.uniform(0.8, 1.25), length / rng.uniform(0.8, 1.25)
        mask = Image.new("L", (int(rw) + 4, int(rh) + 4), 0)
        angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(5, 9))))
        radii = rng.uniform(0.7, 1.0, len(angles))
        ImageDraw.Draw(mask).polygon(
            [(rw / 2 + 2 + r * rw / 2 * np.cos(a), rh / 2 + 2 + r * rh / 2 * np.sin(a))
             for a, r in zip(angles, radii, strict=True)],
            fill=255,
        )  # fmt: skip
        mw, mh = mask.size
        for _ in range(50):
            sx, sy, tx, ty = (int(rng.integers(0, m)) for m in (w - mw, h - mh) * 2)
            patch = rgb.crop((sx, sy, sx + mw, sy + mh))
            apart = abs(sx - tx) > 1.1 * mw or abs(sy - ty) > 1.1 * mh
            if apart and np.asarray(patch.convert("L"), np.float32).std() >= 10:
                break
        else:
            continue  # no textured region found apart from its copy
        soft = mask.filter(ImageFilter.GaussianBlur(1))
        if turned:
            angle = float(rng.uniform(10, 45) * rng.choice([-1, 1]))
            zoom = float(rng.uniform(0.9, 1.1))
            size = (round(mw * zoom), round(mh * zoom))
            patch, soft = (
                im.resize(size, Image.Resampling.BICUBIC).rotate(
                    angle, resample=Image.Resampling.BICUBIC, expand=True
                )
                for im in (patch, soft)
            )
            tx, ty = min(tx, w - patch.width), min(ty, h - patch.height)
        fake = rgb.copy()
        fake.paste(patch, (tx, ty), soft)
        out.append((_save(fake, folder / f"{n:03d}_{Path(item['path']).stem}", 90), 1))
    return out


def cost(detector) -> str:
    """Milliseconds per image for the detector on a CASIA photo and on a 12-megapixel JPEG,
    against decoding that JPEG (median of 5; one process, this machine)."""
    casia = next(i for i in data.casia() if i["split"] == "validation")["path"]
    camera = next(i for i in data.real_photos() if i["set"] == "camera_photos")["path"]
    big = decode(Path(camera).read_bytes())[0].resize((4000, 3000), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=90)
    twelve = buffer.getvalue()

    decode_ms = median_ms(lambda: decode(twelve))
    lines = []
    for label, raw in (("CASIA 384x256", Path(casia).read_bytes()), ("12 MP JPEG", twelve)):
        rgb, fmt = decode(raw)
        sample = Sample("x", "", raw, rgb, fmt)
        detector.predict([sample])  # first call makes the session
        lines.append(f"{label}: {median_ms(lambda s=sample: detector.predict([s])):.0f} ms")
    return "; ".join(lines) + f"; decoding the 12 MP JPEG: {decode_ms:.0f} ms"


def report(detector, copy_moves_only: bool = False) -> None:
    name = detector.name
    val = [i for i in data.casia() if i["split"] == "validation"]
    print(f"Threshold {detector.threshold:.4f}. CASIA v1 validation split: {len(val)} images.\n")
    print(HEADER)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for how in ("as-is", "q75", "q85", "q95"):
            m = evaluate(variants(val, how, folder / "all"), [detector])[name]
            label = "as-is" if how == "as-is" else f"both classes re-saved at JPEG {how}"
            print(row(label, m))
        authentic = [i for i in val if i["label"] == 0]
        # The shortcut probe: CASIA's tampered files were last saved mostly at q75, its
        # authentic ones at q80-90. A detector that learnt "an earlier q75 save" rather than
        # the tampering scores authentic photos saved at q75 and then q85 above the same
        # photos saved at q85 only.
        probe = [(p, 1) for p, _ in variants(authentic, "q75q85", folder / "probe")]
        probe += [(p, 0) for p, _ in variants(authentic, "q85", folder / "probe")]
        m = evaluate(probe, [detector])[name]
        print(
            f"\nShortcut probe: authentic validation photos ({len(authentic)}) saved at q75 then "
            f"q85, against the same saved at q85 only: ROC AUC {m.roc_auc:.3f} (0.5: no "
            f"trace of the earlier quality is scored), flagged {m.tpr:.3f} vs {m.fpr:.3f}"
        )
        print("\n| validation images | as-is | re-saved q85 | shrunk to 75%, q85 |")
        print("|---|---|---|---|")
        for kind in ("Sp_S", "Sp_D"):
            fakes = [i for i in val if Path(i["path"]).name.startswith(kind)]
            cells = []
            for how in ("as-is", "q85", "resize"):
                items = variants(fakes + authentic, how, folder / f"{kind}")
                m = evaluate(items, [detector])[name]
                cells.append(f"TPR {m.tpr:.3f} (FPR {m.fpr:.3f}, AUC {m.roc_auc:.3f})")
            label = "copy-moves `Sp_S`" if kind == "Sp_S" else "splices `Sp_D`"
            print(
                f"| {label} ({len(fakes)}) vs authentic ({len(authentic)}) | "
                + " | ".join(cells)
                + " |"
            )
        print("\n| real photos the threshold was not chosen on | images | labelled fake |")
        print("|---|---|---|")
        for label, items in held_out_reals(folder / "reals").items():
            m = evaluate(items, [detector])[name]
            na = m.not_applicable_real
            print(f"| {label} | {m.n_real} (+{na} n/a) | {m.fpr:.3f} |")
    if copy_moves_only:
        print("\n| copy-moves made in camera photos (`camera_copy_moves`, q90) | images | caught |")
        print("|---|---|---|")
        with tempfile.TemporaryDirectory() as tmp:
            sizes = [(None, False), (800, False), (640, False), (None, True), (800, True)]
            for side, turned in sizes:
                for share in (0.02, 0.05, 0.08):
                    where = Path(tmp) / f"{side}-{share}-{turned}"
                    made = camera_copy_moves(where, share, side, turned=turned)
                    m = evaluate(made, [detector])[name]
                    size = "as they come" if side is None else f"shrunk to {side} px"
                    how = ", turned 10-45 degrees and scaled 0.9-1.1" if turned else ""
                    print(
                        f"| regions of {share:.0%}{how}, photos {size} | {m.n_fake} | {m.tpr:.3f} |"
                    )
    masked = [
        i
        for i in val
        if i["mask"] and (not copy_moves_only or Path(i["path"]).name.startswith("Sp_S"))
    ]
    f1, floor, n = pixel_f1(detector, masked)
    kind = "copy-moves" if copy_moves_only else "tampered images"
    print(
        f"\nPixel F1 (heatmap >= 0.5 vs mask), mean over {n} validation {kind}: {f1:.3f} "
        f"(a heatmap that marks everything: {floor:.3f})"
    )
    print(f"\nCost per image, one process: {cost(detector)}")


def _scores(items: list[tuple[str, int]], detectors, folder: Path) -> dict[str, dict[str, float]]:
    """{path: {detector: score}} for `items` scanned through the pipeline (not-applicable: 0)."""
    from scanner.store import Database, queries

    url = f"sqlite:///{folder / 'scores.db'}"
    evaluate(items, detectors, db_url=url)
    db = Database(url, create=False)
    rows = queries.verdicts(db, queries.ResultFilter())
    db.close()
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        score = r["score"] if r["label"] != "not-applicable" and r["score"] is not None else 0.0
        out.setdefault(str(Path(r["path"]).resolve()), {})[r["detector"]] = score
    return out


def fusion(dct_model_dir: Path | None = None) -> None:
    """Issue 11's next-method question: do copy-move (clones) and dct-splicing (splices) add
    up? Each picture's scores combined by rules with nothing fitted (the larger score; the
    larger of all three shipped tampering detectors), on CASIA v1's validation split, as-is
    and with both classes re-saved at q85. `dct_model_dir`: a dct-splicing candidate's
    model.onnx and model.json instead of the shipped ones."""
    import numpy as np

    from scanner.evaluate import roc_auc, roc_auc_interval
    from scanner_plugins.copy_move import CopyMove
    from scanner_plugins.dct_splicing import DctSplicing
    from scanner_plugins.splicing import Splicing

    detectors = [CopyMove(), DctSplicing(), Splicing()]
    if dct_model_dir:
        detectors[1].model_dir = dct_model_dir
    for detector in detectors:
        detector.load()
    val = [i for i in data.casia() if i["split"] == "validation"]
    kinds = np.array([Path(i["path"]).name[:4] for i in val])
    print(f"CASIA v1 validation split: {len(val)} images; ROC AUC, all tampered / copy-moves")
    print("(`Sp_S`) / splices (`Sp_D`), each against every authentic photo.\n")
    print("| scores | variant | all (95% interval) | copy-moves | splices |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for how in ("as-is", "q85"):
            folder = Path(tmp) / how
            folder.mkdir()
            items = variants(val, how, folder)
            scored = _scores(items, detectors, folder)
            y = np.array([label for _, label in items])
            per = {
                d.name: np.array([scored[str(Path(p).resolve())][d.name] for p, _ in items])
                for d in detectors
            }
            rules = dict(per)
            rules["max(copy-move, dct-splicing)"] = np.maximum(
                per["copy-move"], per["dct-splicing"]
            )
            rules["max of all three"] = np.maximum.reduce(list(per.values()))
            for name, s in rules.items():
                cells = [roc_auc(s, y)]
                for kind in ("Sp_S", "Sp_D"):
                    keep = (kinds == kind) | (y == 0)
                    cells.append(roc_auc(s[keep], y[keep]))
                low, high = roc_auc_interval(s, y)
                cells = [f"{c:.3f}" for c in cells]
                cells[0] += f" ({low:.2f}-{high:.2f})"
                print(f"| {name} | {how} | " + " | ".join(cells) + " |")
