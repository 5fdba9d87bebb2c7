"""Scoring a labelled set of images with the installed detectors, through the same Pipeline as
`scanner scan`, and the metrics model cards quote: accuracy at the detector's threshold, ROC AUC
with its 95% confidence interval, the rates at the threshold with theirs, and the true-positive
rate at 5% false-positive rate."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from scanner.config import Settings
from scanner.detectors import Detector
from scanner.files import iter_files
from scanner.pipeline import Pipeline
from scanner.store import Database, queries

# Class folder names read as "fake" and "real" when none are given.
FAKE_NAMES = ("fake", "fakes", "tampered", "manipulated", "generated", "df", "spliced")
REAL_NAMES = ("real", "reals", "authentic", "pristine", "original", "genuine")


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); nan if one class."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average rank over each run of tied scores
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc_interval(
    scores: Sequence[float], labels: Sequence[int], z: float = 1.96
) -> tuple[float, float]:
    """A 95% confidence interval (z = 1.96) of the ROC AUC, from DeLong et al. 1988's variance:
    on a few dozen images per class the AUC moves by 0.05-0.1 from one sample to the next, and
    a comparison that the interval does not clear is not resolved. (nan, nan) if one class."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    fake, real = scores[labels], np.sort(scores[~labels])
    if len(fake) < 2 or len(real) < 2:
        return float("nan"), float("nan")
    # Each fake's share of reals scored below it (ties half), and each real's share of fakes
    # scored above it: the AUC is the mean of either, its variance comes from their spread.
    below = np.searchsorted(real, fake, "left")
    at_or_below = np.searchsorted(real, fake, "right")
    per_fake = (below + at_or_below) / 2 / len(real)
    ordered_fake = np.sort(fake)
    above = len(fake) - np.searchsorted(ordered_fake, real, "right")
    at_or_above = len(fake) - np.searchsorted(ordered_fake, real, "left")
    per_real = (above + at_or_above) / 2 / len(fake)
    auc = per_fake.mean()
    variance = per_fake.var(ddof=1) / len(fake) + per_real.var(ddof=1) / len(real)
    half = z * np.sqrt(variance)
    return float(max(0.0, auc - half)), float(min(1.0, auc + half))


def rate_interval(count: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """A 95% confidence interval (z = 1.96) of a rate seen as `count` of `total`: Wilson's score
    interval, which stays inside 0-1 and is not empty at 0 of n. "None of 92 real photos
    flagged" is then a false-positive rate of 0-4.0%, not a proof of under 2%: the bound a
    sample can show is what the card may claim. (nan, nan) for an empty sample."""
    if total <= 0:
        return float("nan"), float("nan")
    share = count / total
    centre = share + z * z / (2 * total)
    spread = z * np.sqrt(share * (1 - share) / total + z * z / (4 * total * total))
    scale = 1 + z * z / total
    return float(max(0.0, (centre - spread) / scale)), float(min(1.0, (centre + spread) / scale))


def tpr_at_fpr(scores: Sequence[float], labels: Sequence[int], fpr: float = 0.05) -> float:
    """The highest share of fakes caught by a threshold that flags at most `fpr` of the reals."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    real, fake = np.sort(scores[~labels])[::-1], scores[labels]
    if len(real) == 0 or len(fake) == 0:
        return float("nan")
    allowed = int(np.floor(fpr * len(real)))  # reals that may score above the threshold
    threshold = real[allowed] if allowed < len(real) else -np.inf
    return float((fake > threshold).mean())


@dataclass
class Metrics:
    """A detector's metrics on the images it judged. A metric that needs a class with no images
    is nan (printed as null): an accuracy over one class alone would say nothing."""

    n_fake: int
    n_real: int
    not_applicable_fake: int
    not_applicable_real: int
    accuracy: float  # at the detector's threshold; nan unless both classes were judged
    tpr: float  # share of the fakes labelled fake at the threshold; nan with no fakes
    fpr: float  # share of the reals labelled fake at the threshold; nan with no reals
    roc_auc: float
    tpr_at_5_fpr: float
    roc_auc_low: float = float("nan")  # its 95% confidence interval (roc_auc_interval)
    roc_auc_high: float = float("nan")
    tpr_low: float = float("nan")  # 95% confidence intervals of tpr and fpr (rate_interval)
    tpr_high: float = float("nan")
    fpr_low: float = float("nan")
    fpr_high: float = float("nan")

    @classmethod
    def compute(cls, scores, labels, threshold: float, na_fake: int = 0, na_real: int = 0):
        scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=int)
        flagged = scores >= threshold
        fakes, reals = labels == 1, labels == 0
        both = fakes.any() and reals.any()
        return cls(
            int(fakes.sum()),
            int(reals.sum()),
            na_fake,
            na_real,
            float((flagged.astype(int) == labels).mean()) if both else float("nan"),
            float(flagged[fakes].mean()) if fakes.any() else float("nan"),
            float(flagged[reals].mean()) if reals.any() else float("nan"),
            roc_auc(scores, labels),
            tpr_at_fpr(scores, labels),
            *roc_auc_interval(scores, labels),
            *rate_interval(int(flagged[fakes].sum()), int(fakes.sum())),
            *rate_interval(int(flagged[reals].sum()), int(reals.sum())),
        )


def labelled_files(
    folder: str, fake: Sequence[str] = FAKE_NAMES, real: Sequence[str] = REAL_NAMES
) -> list[tuple[str, int]]:
    """(path, 1 if fake else 0) for the images in `folder`'s class subfolders."""
    items = []
    for name in sorted(os.listdir(folder)):
        sub = os.path.join(folder, name)
        if not os.path.isdir(sub) or name.lower() not in {*fake, *real}:
            continue
        label = 1 if name.lower() in fake else 0
        items.extend((path, label) for path in iter_files([sub]))
    return items


def evaluate(
    items: Sequence[tuple[str, int]],
    detectors: Sequence[Detector],
    settings: Settings | None = None,
    db_url: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Metrics]:
    """Scan `items` (path, label) into a database (a temporary one unless `db_url` is given),
    then compute each detector's metrics from the stored verdicts. `progress(n)` hears of
    every n files done."""
    labels = {os.path.abspath(p): y for p, y in items}
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(db_url or f"sqlite:///{tmp}/evaluate.db")
        pipeline = Pipeline(db, detectors, settings or Settings())
        try:
            pipeline.scan(sorted(labels), progress=progress)
        finally:
            pipeline.close()
        rows = queries.verdicts(db, queries.ResultFilter())
        db.close()
    out = {}
    for det in detectors:
        mine = [r for r in rows if r["detector"] == det.name and r["path"] in labels]
        scored = [r for r in mine if r["label"] != "not-applicable"]
        na = [labels[r["path"]] for r in mine if r["label"] == "not-applicable"]
        out[det.name] = Metrics.compute(
            [r["score"] for r in scored],
            [labels[r["path"]] for r in scored],
            det.threshold,
            na_fake=sum(na),
            na_real=len(na) - sum(na),
        )
    return out
