"""Where dct-splicing's threshold comes from, and how much of a real photo's score is its size.

    python -m export.diagnose_dct

The detector's image score is the strongest 5x5-block neighbourhood of its block map, so a
larger picture offers more neighbourhoods to be high by chance. Two tables:
1. the shipped detector's scores on the calibration real photos its threshold was chosen on
   (export/train_dct_splicing.calibration_reals), per set and size: which set pins the
   threshold (with a few dozen photos per set and at most 2% flagged per set, it is that set's
   highest score);
2. the network on windows of CASIA's size (32x48 blocks, 256x384 pixels, turned with the
   picture) at up to 16 places in each picture: a window's score compares a camera photo with
   CASIA's validation photos at the same area; the highest window of each picture shows what
   the area adds. No threshold or model is fitted here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from export import data
from export.train_dct_splicing import calibration_reals, jpeg
from scanner.evaluate import roc_auc
from scanner.imaging import Sample, decode
from scanner_plugins.dct_splicing import DctSplicing, features, neighbourhood_max
from scanner_plugins.metadata.jpeg import luma_plane

WINDOW = (32, 48)  # blocks (rows, columns): a landscape CASIA v1 photo
PLACES = 4  # at most this many windows along each side


def window_scores(detector: DctSplicing, raw: bytes) -> list[float]:
    """The score (strongest 5x5 neighbourhood) of each CASIA-size window of a JPEG, placed
    evenly over the picture; empty when the picture is smaller than one window."""
    plane = luma_plane(raw)
    if plane is None:
        return []
    luma, table = plane
    rows, cols = luma.shape[0] // 8, luma.shape[1] // 8
    height, width = WINDOW if cols >= rows else WINDOW[::-1]
    if rows < height or cols < width:
        return []
    ys = np.linspace(0, rows - height, min(PLACES, rows // height)).round().astype(int)
    xs = np.linspace(0, cols - width, min(PLACES, cols // width)).round().astype(int)
    scores = []
    for y in ys:
        for x in xs:
            region = luma[y * 8 : (y + height) * 8, x * 8 : (x + width) * 8]
            inputs = features(region, table, detector.meta.get("grid_phases", False))[None]
            scores.append(neighbourhood_max(detector.model.run(inputs)[0][0, ..., 0]))
    return scores


def _summary(name: str, values) -> str:
    v = np.asarray(values, dtype=float)
    return (
        f"| {name} | {len(v)} | {v.mean():.3f} | {np.quantile(v, 0.9):.3f} | "
        f"{np.quantile(v, 0.98):.3f} | {v.max():.3f} |"
    )


def calibration_table(detector: DctSplicing) -> None:
    print(f"Calibration real photos, shipped detector (threshold {detector.threshold:.3f}):\n")
    print("| set | photos | mean | 90th percentile | 98th | highest |\n|---|---|---|---|---|---|")
    per_set: dict[str, list[float]] = {}
    for raw, set_name in calibration_reals():
        rgb, fmt = decode(raw)
        score = detector.predict([Sample("x", "", raw, rgb, fmt)])[0].score
        size = "over" if rgb.width * rgb.height > 400_000 else "under"
        if score is not None:
            per_set.setdefault(f"{set_name}, {size} 0.4 MP", []).append(score)
    for name, scores in sorted(per_set.items()):
        print(_summary(name, scores))


def window_table(detector: DctSplicing) -> None:
    groups: dict[str, list[list[float]]] = {}
    for item in data.real_photos():
        if item["set"] == "camera_photos":
            scores = window_scores(detector, Path(item["path"]).read_bytes())
            groups.setdefault("camera_photos (all 68), as they come", []).append(scores)
    for item in [i for i in data.casia() if i["split"] == "validation"]:
        kind = "tampered" if item["label"] else "authentic"
        raw = Path(item["path"]).read_bytes()
        groups.setdefault(f"CASIA validation {kind}, as-is", []).append(
            window_scores(detector, raw)
        )
        groups.setdefault(f"CASIA validation {kind}, re-saved q85", []).append(
            window_scores(detector, jpeg(data.casia_image(item)[0], 85))
        )
    print("\nCASIA-size windows (32x48 blocks):\n")
    print(
        "| photos | n | windows per photo | window score, mean | first window, 98th pct | "
        "highest window per photo, mean | its 98th pct |\n|---|---|---|---|---|---|---|"
    )
    for name, rows in groups.items():
        rows = [r for r in rows if r]
        windows = np.concatenate(rows)
        first = [r[0] for r in rows]
        highest = [max(r) for r in rows]
        print(
            f"| {name} | {len(rows)} | {len(windows) / len(rows):.1f} | {windows.mean():.3f} | "
            f"{np.quantile(first, 0.98):.3f} | {np.mean(highest):.3f} | "
            f"{np.quantile(highest, 0.98):.3f} |"
        )
    camera = groups["camera_photos (all 68), as they come"]
    for how in ("as-is", "re-saved q85"):
        fakes = [r[0] for r in groups[f"CASIA validation tampered, {how}"] if r]
        for name, reals in (
            ("CASIA authentic", [r[0] for r in groups[f"CASIA validation authentic, {how}"] if r]),
            ("camera photos' first window", [r[0] for r in camera if r]),
            ("camera photos' highest window", [max(r) for r in camera if r]),
        ):
            auc = roc_auc(fakes + reals, [1] * len(fakes) + [0] * len(reals))
            print(f"CASIA tampered ({how}) against {name}: ROC AUC {auc:.3f}")


def main() -> None:
    detector = DctSplicing()
    detector.load()
    calibration_table(detector)
    window_table(detector)


if __name__ == "__main__":
    main()
