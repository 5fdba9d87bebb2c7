"""How one image's verdicts combine into its overall verdict.

The rule, as documented in the README, counts only the verdicts of the detectors *in use*: the
default set (the detectors on by default), or the set a user names with `--detector`. Verdicts of
other detectors stay stored and are shown on request, but do not vote.

- `fake`: a detector in use labels the image fake. The scanner is a screening tool and each
  detector looks for a different kind of forgery, so one alarm sends the image to a person.
- `no-sign`: at least one detector in use judged the image and none labels it fake. It means
  "nothing found by these checks", never "real": every detector misses some fakes.
- `unknown`: no detector in use could judge it (each said not-applicable, or none ran).
- `error`: the file could not be scanned at all (its error row says why). `scanner results`
  lists these too, so that a fake cannot hide from a listing by being made unreadable.

The overall score is the highest P(fake) among the in-use verdicts that judged the image.
The image_results SQL view (store migration 0003) applies the same rule to the default set.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

OVERALL_LABELS = ("fake", "no-sign", "unknown", "error")


@dataclass(frozen=True)
class Overall:
    label: str
    score: float | None
    flagged_by: tuple[str, ...]
    checked_by: tuple[str, ...]  # the detectors in use that could judge the image


def overall(
    verdicts: Iterable[tuple[str, str, float | None]], in_use: Collection[str] | None = None
) -> Overall:
    """Combine (detector, label, score) triples into the image's overall verdict, counting only
    the detectors named in `in_use` (all of them when it is None)."""
    votes = [v for v in verdicts if in_use is None or v[0] in in_use]
    judged = [(name, label, score) for name, label, score in votes if label != "not-applicable"]
    flagged = tuple(sorted(name for name, label, _ in judged if label == "fake"))
    scores = [score for _, _, score in judged if score is not None]
    label = "fake" if flagged else "no-sign" if judged else "unknown"
    return Overall(
        label, max(scores) if scores else None, flagged, tuple(sorted(n for n, *_ in judged))
    )
