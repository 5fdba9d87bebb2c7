"""How one image's verdicts combine into its overall verdict.

The rule, as documented in the README: an image is `fake` when any detector labels it fake (the
scanner is a screening tool, and each detector looks for a different kind of forgery, so one
detector's alarm is enough to send the image to a person); `real` when at least one detector
could judge it and none labels it fake; `unknown` when no detector could judge it (every verdict
is not-applicable, or none exists). The overall score is the highest P(fake) among the verdicts
that have one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Overall:
    label: str
    score: float | None
    flagged_by: tuple[str, ...]


def overall(verdicts: Iterable[tuple[str, str, float | None]]) -> Overall:
    """Combine (detector, label, score) triples into the image's overall verdict."""
    verdicts = list(verdicts)
    flagged = tuple(sorted(name for name, label, _ in verdicts if label == "fake"))
    scores = [
        score for _, label, score in verdicts if label != "not-applicable" and score is not None
    ]
    if flagged:
        label = "fake"
    elif any(label == "real" for _, label, _ in verdicts):
        label = "real"
    else:
        label = "unknown"
    return Overall(label, max(scores) if scores else None, flagged)
