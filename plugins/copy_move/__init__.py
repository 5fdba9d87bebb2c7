"""Copy-move: finds a region of a photo pasted elsewhere in the same photo, by matching the
photo's SIFT keypoints against each other and verifying each match cluster with an affine fit
and a pixel-by-pixel comparison (matching.py). No network: the evidence is geometric, so it
survives a re-save, a resize and a rotation of the copied region. The few numbers that turn the
evidence into a probability, and the threshold, are in model.json (export/train_copy_move.py).

Details list each region pair found (its two boxes, left, top, right, bottom in image pixels,
in no particular order: which one is the original cannot be told); the heatmap marks both
regions of every pair strong enough to flag the image, at the image's resolution; an image
without such a pair has no heatmap."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np

from scanner.detectors import Detector, Result
from scanner_plugins.copy_move.matching import (
    RegionPair,
    copied_mask,
    region_pairs,
    work_copy,
)

HERE = Path(__file__).parent
MIN_SIDE = 64  # smaller images have too few keypoints to match


def evidence(pair: RegionPair, weights: dict) -> float:
    """The log-odds that one region pair is a copy, from its pixel agreement. A pair
    that repeats further on (a periodic structure), or whose moved source does not reproduce
    the copy's pixels (two lookalike windows, letters, leaves), is no evidence."""
    if pair.repeats >= weights["max_repeats"] or pair.dense < weights["min_pixel_match"]:
        return -np.inf
    return weights["bias"] + weights["dense"] * pair.dense


def probability(pairs: list[RegionPair], weights: dict) -> float:
    """P(copy-move) of an image: its strongest pair's evidence, or the bias when no pair
    counts."""
    logit = max([weights["bias"]] + [evidence(p, weights) for p in pairs])
    return float(1.0 / (1.0 + np.exp(-logit)))


def _box(points: np.ndarray, scale: float) -> list[int]:
    low, high = points.min(axis=0) / scale, points.max(axis=0) / scale
    return [round(float(v)) for v in (*low, *high)]


class CopyMove(Detector):
    name = "copy-move"
    # 1.1.0: SIFT on the work copy at half size (2.4x faster), calibrated again.
    # 1.2.0: small photos' work copies whole, a lower contrast threshold, recalibrated.
    # 1.3.0: moved copies found by matching blocks too (blocks.py), recalibrated.
    # 1.4.0: small photos' work copies 576 px long (768 before), recalibrated.
    # 1.5.0: a block offset is the one most pairs voted for (blocks.vote_peaks), recalibrated.
    # 1.6.0: a pair whose copy repeats at a fraction of its step is periodic (lines of text).
    # 1.6.1: the pixel check on a window around each copy, not the whole work copy (the same
    #        labels on 1,779 photos, scores within 0.0011; up to a third faster).
    # 1.7.0: a photo of 576-1023 px searched by SIFT at 512 px, not at half its size.
    # 1.8.0: a SIFT pair whose pixels repeat one step further on or back is periodic, as
    #        the blocks' pairs already were (enlarged CASIA training photos flagged 9 -> 5).
    # 1.9.0: blocks searched at the photo's own size up to 768 px, not always at 384 (copy-moves
    #        of 2% made in camera photos found 9-10% -> 47-66%; CASIA's photos unchanged).
    version = "1.9.0"
    needs = frozenset({"rgb"})
    uses_settings = frozenset()
    threshold = 0.5  # replaced in load() by model.json's, chosen on held-out real photos
    description = "Copy-move (a region cloned within the photo) by SIFT matching. Heatmap."
    batch_size = 1
    # On by default: it catches 62-71% of CASIA's validation copy-moves, re-saved or not, and
    # labels 1 of 222 held-out real photos from other sources fake (issue 11's bar;
    # MODEL_CARD.md).
    enabled_by_default = True

    def load(self) -> None:
        raw = (HERE / "model.json").read_bytes()
        self.meta = json.loads(raw)
        self.weights = self.meta["weights"]
        self.threshold = self.meta["threshold"]
        self._hash = hashlib.sha256(raw).hexdigest()

    @property
    def model_hash(self) -> str:
        return self._hash

    def judge(self, rgb) -> tuple[float, list[RegionPair], float, np.ndarray]:
        """(score, region pairs, work-copy scale, work copy) for a PIL RGB image."""
        grey, scale = work_copy(np.asarray(rgb.convert("L")))
        pairs = region_pairs(grey, scale)
        return probability(pairs, self.weights), pairs, scale, grey

    def predict(self, batch):
        results = []
        for sample in batch:
            if min(sample.size) < MIN_SIDE:
                results.append(Result.not_applicable(f"smaller than {MIN_SIDE} pixels"))
                continue
            score, pairs, scale, grey = self.judge(sample.rgb)
            # Only pairs strong enough on their own to flag the image are drawn. With none,
            # there is no heatmap: a blank one at the image's resolution said nothing and cost
            # a 12-megapixel photo 35-40 ms and 52 kB in the database.
            drawn = [p for p in pairs if probability([p], self.weights) >= self.threshold]
            heatmap = None
            if drawn:
                heatmap = np.zeros(grey.shape, np.uint8)
                for pair in drawn:
                    heatmap = np.maximum(heatmap, copied_mask(pair))
                width, height = sample.size
                heatmap = cv2.resize(heatmap, (width, height), interpolation=cv2.INTER_NEAREST)
            details = {
                "regions": [
                    {
                        # Which of the two is the original, the pixels cannot tell.
                        "boxes": [_box(p.source, scale), _box(p.copy, scale)],
                        "inliers": p.inliers,
                        "pixel_match": round(p.dense, 3),
                        "probability": round(probability([p], self.weights), 4),
                    }
                    for p in pairs
                ]
            }
            results.append(
                Result.from_score(score, self.threshold, details=details, heatmap=heatmap)
            )
        return results
