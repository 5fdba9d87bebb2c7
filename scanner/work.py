"""The work done on one image: decode it, describe it (image row, ELA PNG), run the detectors
it still needs. The same function runs in a worker process (scanner.workers) or, with
SCANNER_WORKERS=0, in the scanning process itself.

Everything it returns is plain records, so that it can cross a pipe: no Sample, no image.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from scanner.config import Settings
from scanner.detectors import Detector, Result
from scanner.imaging import (
    ELA_SCALE,
    ImageError,
    Sample,
    decode_salvaging,
    heatmap_png,
    largest_channel,
    scale_difference,
    to_png,
)
from scanner.store.database import ElaRecord, ErrorRecord, ImageRecord, VerdictRecord

DECODING = "decoding"  # the stage before any detector runs: decode, ELA, faces


@dataclass(frozen=True)
class Job:
    """One picture to work on. `detectors`: names of those to run; `describe`: compute the
    image row and ELA (a picture new to the database); `pixels`: its size from the header
    (0 when the header could not be read), for the budget of pixels in flight."""

    path: str
    sha256: str
    data: bytes
    detectors: tuple[str, ...]
    describe: bool
    pixels: int = 0


@dataclass
class Done:
    """What the work produced. `failure` ((kind, message), the image could not be decoded or
    its work did not finish) excludes everything else."""

    image: ImageRecord | None = None
    ela: ElaRecord | None = None
    verdicts: list[VerdictRecord] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)  # detector errors
    failure: tuple[str, str] | None = None
    damage: tuple[str, str] | None = None  # (kind, message): decoded as far as it goes


def check(result) -> tuple[str | None, bytes | None]:
    """(why the result breaks the contract, or None; its heatmap as PNG, or None)."""
    if not isinstance(result, Result):
        return "not a Result", None
    problem = result.problem()
    if problem or result.heatmap is None:
        return problem, None
    try:
        return None, heatmap_png(result.heatmap)
    except (TypeError, ValueError) as exc:
        return f"heatmap: {exc}", None


def describe(sample: Sample, settings: Settings) -> tuple[ImageRecord, ElaRecord | None]:
    """The image row and its ELA PNG (None with --no-ela)."""
    width, height = sample.size
    image = ImageRecord(sample.sha256, sample.format, width, height, len(sample.data))
    if not settings.store_ela:
        return image, None
    difference = sample.ela_difference()
    if settings.ela_grey:
        difference = largest_channel(difference)
    shown = scale_difference(difference, ELA_SCALE)
    png = to_png(shown, settings.ela_max_side)
    shrink = min(1.0, settings.ela_max_side / max(shown.size))
    return image, ElaRecord(
        sample.sha256,
        sample.ela_quality,
        sample.ela_max_diff(),
        ELA_SCALE,
        max(1, round(width * shrink)),
        max(1, round(height * shrink)),
        png,
    )


def run_detector(detector: Detector, sample: Sample, settings: dict) -> VerdictRecord | ErrorRecord:
    """One detector's verdict on one sample, or the error row that says why there is none.
    A broken detector costs its own verdict, nothing else."""
    started = time.perf_counter()

    def error(message: str) -> ErrorRecord:
        return ErrorRecord(sample.path, "detector-error", message, detector.name, sample.sha256)

    try:
        results = list(detector.predict([sample]))
        if len(results) != 1:
            return error(f"returned {len(results)} results for 1 image")
        model_hash = detector.model_hash
        if model_hash is not None and not isinstance(model_hash, str):
            return error(f"model_hash is a {type(model_hash).__name__}, not text")
        problem, heatmap = check(results[0])
    # SystemExit included: a plugin must not end the scan. KeyboardInterrupt is left alone: it
    # is how a user stops a scan.
    except (Exception, SystemExit) as exc:  # noqa: BLE001
        return error(f"{type(exc).__name__}: {exc}")
    if problem:
        return error(problem)
    result = results[0]
    return VerdictRecord(
        sample.sha256,
        detector.name,
        detector.version,
        model_hash,
        result.label,
        result.score,
        detector.threshold if result.label != "not-applicable" else None,
        result.reason,
        result.details,
        heatmap,
        time.perf_counter() - started,
        settings or None,
    )


def work(
    job: Job,
    detectors: Sequence[Detector],
    settings: Settings,
    detector_settings: dict[str, dict],
    stage: Callable[[str], None] = lambda name: None,
) -> Done:
    """Decode `job`'s picture once and run what it needs. `stage(name)` hears of each step
    before it starts (DECODING, then each detector's name): a worker's parent uses it to blame
    the right step when the work runs out of time or memory."""
    stage(DECODING)
    try:
        rgb, fmt, damage = decode_salvaging(job.data)
    except ImageError as exc:
        return Done(failure=(exc.kind, str(exc)))
    sample = Sample(
        job.path, job.sha256, job.data, rgb, fmt, settings.ela_quality, settings.face_crops
    )
    done = Done(damage=damage)
    if job.describe:
        done.image, done.ela = describe(sample, settings)
    for detector in detectors:
        if detector.name not in job.detectors:
            continue
        stage(detector.name)
        outcome = run_detector(detector, sample, detector_settings.get(detector.name, {}))
        (done.verdicts if isinstance(outcome, VerdictRecord) else done.errors).append(outcome)
    return done
