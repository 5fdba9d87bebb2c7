"""The measurements in the generated-image detector's model card (issue 13's bar).

    python -m export.evaluate_models generated [--model-dir DIR] [--logo DIR ...]

1. Validation splits, as the files come and with both classes re-saved at JPEG q85:
   CNNDetection's GAN families (ROC AUC, and each family's fakes and reals right at the
   threshold), StyleGAN2 faces, and SD 1.5 tiles against every camera photo (none trained on).
2. No format shortcut: SD tiles and Kodak scans scored as PNG and as JPEG q85.
3. Real photos labelled fake at the threshold, on sets its threshold was not chosen on.
4. Leave-one-generator-out: each `--logo` folder holds a model trained without one family
   (`python -m export.train_generated --leave-out FAMILY --out DIR`); the AUC of that family's
   fakes (every one: none was trained on) against the validation reals, both at q85.
5. Cost on a 12-megapixel photo against decoding it.
Each picture is scored by the plugin's own predict() on the Sample the scan pipeline builds.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from export import data
from export.evaluate_models import median_ms
from scanner.evaluate import roc_auc, roc_auc_interval
from scanner.imaging import Sample, decode


def _sample(rgb: Image.Image, fmt: str = "PNG", **options) -> Sample:
    """The picture saved as `fmt` and decoded again, as a scan would see that file."""
    buffer = io.BytesIO()
    rgb.save(buffer, fmt, **options)
    decoded, kind = decode(buffer.getvalue())
    return Sample("x", "", buffer.getvalue(), decoded, kind)


def scores(detector, samples: list[Sample]) -> np.ndarray:
    out = []
    for start in range(0, len(samples), 16):
        results = detector.predict(samples[start : start + 16])
        out += [np.nan if r.score is None else r.score for r in results]
    return np.array(out)


def as_is(item: dict) -> Sample:
    if "tile" in item:  # a tile of a WebP grid: its decoded pixels, kept losslessly
        return _sample(data.load_rgb(item))
    raw = Path(item["path"]).read_bytes()
    rgb, kind = decode(raw)
    return Sample(item["path"], "", raw, rgb, kind)


def q85(item: dict) -> Sample:
    return _sample(data.load_rgb(item), "JPEG", quality=85)


def _line(name: str, fake: np.ndarray, real: np.ndarray, threshold: float) -> str:
    auc = roc_auc(np.r_[fake, real], [1] * len(fake) + [0] * len(real))
    return (
        f"| {name} | {len(fake)} / {len(real)} | {auc:.3f} | {np.mean(fake >= threshold):.3f} "
        f"| {np.mean(real >= threshold):.3f} |"
    )


def validation(detector) -> None:
    items = data.generated_images()
    val = [i for i in items if i["split"] == "validation"]
    threshold = detector.threshold
    cameras = [i for i in data.real_photos() if i["set"] == "camera_photos"]
    print("| data | fake / real | ROC AUC | TPR at threshold | FPR at threshold |")
    print("|---|---|---|---|---|")
    gan_names = {i["family"] for i in data.gan()}
    for how, make in (("as-is", as_is), ("both re-saved at q85", q85)):
        for name, fakes, reals in (
            ("CNNDetection", [i for i in val if i["family"] in gan_names], None),
            ("StyleGAN2 faces", [i for i in val if i["family"] == "stylegan2"], None),
            ("SD 1.5 tiles vs camera photos", [i for i in val if i["family"] == "sd15"], cameras),
        ):
            if reals is None:
                fakes, reals = (
                    [i for i in fakes if i["label"] == 1],
                    [i for i in fakes if i["label"] == 0],
                )
            fake = scores(detector, [make(i) for i in fakes])
            real = scores(detector, [make(i) for i in reals])
            print(_line(f"{name}, {how}", fake, real, threshold))
    print("\nCNNDetection validation images per family, both at q85 (fakes / reals right):")
    gan_val = [i for i in val if i["family"] in gan_names]
    got = scores(detector, [q85(i) for i in gan_val])
    for family in sorted(gan_names):
        index = [n for n, i in enumerate(gan_val) if i["family"] == family]
        fake = [got[n] >= threshold for n in index if gan_val[n]["label"] == 1]
        real = [got[n] < threshold for n in index if gan_val[n]["label"] == 0]
        print(f"- {family}: {sum(fake)}/{len(fake)}, {sum(real)}/{len(real)}")


def formats(detector) -> None:
    print("\nThe same pictures as PNG and as JPEG q85 (mean score; share at or over threshold):")
    tiles = [i for i in data.sd15() if i["split"] == "validation"]
    kodak = [i for i in data.real_photos() if i["set"] == "real_lossless"]
    for name, items in (("SD 1.5 validation tiles", tiles), ("Kodak scans (all 24)", kodak)):
        png = scores(detector, [_sample(data.load_rgb(i)) for i in items])
        jpg = scores(detector, [q85(i) for i in items])
        print(
            f"- {name}: PNG {png.mean():.3f} ({np.mean(png >= detector.threshold):.2f}), "
            f"JPEG q85 {jpg.mean():.3f} ({np.mean(jpg >= detector.threshold):.2f}), "
            f"mean |difference| {np.abs(png - jpg).mean():.3f}"
        )


def false_positives(detector) -> None:
    print("\nReal photos labelled fake at the threshold (sets the threshold was not chosen on):")
    held = [i for i in data.real_photos() if i["split"] == "held-out"]
    camera = [i for i in held if i["set"] == "camera_photos"]
    kodak = [i for i in held if i["set"] == "real_lossless"]

    def shrunk(item):
        rgb = data.load_rgb(item)
        rgb = rgb.resize(
            (round(rgb.width * 0.6), round(rgb.height * 0.6)), Image.Resampling.LANCZOS
        )
        return _sample(rgb, "JPEG", quality=80)

    calibration = {Path(i["path"]).name for i in data.face_calibration()}
    faces = [
        i
        for i in data.faces()
        if i["label"] == 0
        and i["split"] == "validation"
        and Path(i["path"]).name not in calibration
    ]
    val = [i for i in data.generated_images() if i["split"] == "validation" and i["label"] == 0]
    sets = (
        ("camera_photos, held-out half by camera model, as-is", [as_is(i) for i in camera]),
        ("the same, shrunk to 60% and re-saved at q80", [shrunk(i) for i in camera]),
        (
            "Kodak scans, held-out half, PNG and JPEG q75 / q85 / q95",
            [_sample(data.load_rgb(i)) for i in kodak]
            + [_sample(data.load_rgb(i), "JPEG", quality=q) for i in kodak for q in (75, 85, 95)],
        ),
        ("real faces, validation reals not used for the threshold", [as_is(i) for i in faces]),
        ("CASIA, CNNDetection and face validation reals", [as_is(i) for i in val]),
    )
    for name, samples in sets:
        got = scores(detector, samples)
        print(f"- {name}: {np.mean(got >= detector.threshold):.3f} of {len(got)}")


def leave_one_out(folders: list[Path]) -> None:
    from scanner_plugins.generated import Generated

    print(
        "\nLeave one generator out (ROC AUC of the left-out fakes against validation reals, q85):"
    )
    items = data.generated_images()
    reals = [i for i in items if i["split"] == "validation" and i["label"] == 0]
    gan_names = {i["family"] for i in data.gan()}
    aucs = []
    for folder in folders:
        left_out = json.loads((folder / "model.json").read_text())["left_out"]
        detector = Generated()
        detector.model_dir = folder
        detector.load()
        families = gan_names if left_out == "cnndetection" else {left_out}
        fakes = [i for i in items if i["label"] == 1 and i["family"] in families]
        fake = scores(detector, [q85(i) for i in fakes])
        real = scores(detector, [q85(i) for i in reals])
        scored, labels = np.r_[fake, real], [1] * len(fake) + [0] * len(real)
        aucs.append(roc_auc(scored, labels))
        low, high = roc_auc_interval(scored, labels)
        print(f"- without {left_out}: {len(fake)} fakes, AUC {aucs[-1]:.3f} ({low:.2f}-{high:.2f})")
        if len(families) > 1:  # each generator of the group, none of them seen
            for family in sorted(families):
                mine = np.array([i["family"] == family for i in fakes])
                auc = roc_auc(np.r_[fake[mine], real], [1] * mine.sum() + [0] * len(real))
                print(f"  - {family}: {mine.sum()} fakes, AUC {auc:.3f}")
    if aucs:
        print(f"- mean {np.mean(aucs):.3f}")


def cost(detector) -> None:
    source = data.load_rgb({"path": str(data.DATA / "real_lossless" / "real" / "kodim23.png")})
    big = np.asarray(source.resize((4000, 3000), Image.Resampling.BICUBIC), dtype=np.int16)
    # A little sensor-like noise: an enlarged scan alone is smoother, and faster to decode,
    # than any camera's 12 MP JPEG.
    noise = np.random.default_rng(0).integers(-3, 4, big.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(big + noise, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    raw = buffer.getvalue()
    rgb, kind = decode(raw)
    sample = Sample("x", "", raw, rgb, kind)
    detector.predict([sample])  # the session is made on first use
    print(
        f"\nCost on a 12 MP JPEG: {median_ms(lambda: detector.predict([sample])):.0f} ms; "
        f"decoding it {median_ms(lambda: decode(raw)):.0f} ms"
    )


def report(detector, logo: list[Path]) -> None:
    print(f"threshold {detector.threshold:.4f}\n")
    validation(detector)
    formats(detector)
    false_positives(detector)
    leave_one_out(logo)
    cost(detector)
