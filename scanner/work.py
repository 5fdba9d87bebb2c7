"""The work done on one image: decode it, describe it (image row, ELA PNG), run the detectors
it still needs. The same function runs in a worker process (scanner.workers) or, with
SCANNER_WORKERS=0, in the scanning process itself. The Ray engine with `--ray-decode tasks`
splits it in two: prepare() (decode, describe, views) in Ray tasks, then work() on the
Prepared picture in its detector actors.

What work() returns is plain records, so that it can cross a pipe: no Sample, no image.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from scanner.config import Settings
from scanner.detectors import Detector, Result
from scanner.ela import ELA_SCALE, scale_difference
from scanner.imaging import ImageError, Sample, decode_salvaging, heatmap_png, to_png
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
    difference = sample.ela_grey_difference() if settings.ela_grey else sample.ela_difference()
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


@dataclass
class Prepared:
    """A job's picture decoded and described, with the views its detectors need computed:
    what one process hands another so that the second runs only the detectors (the Ray
    engine's decoding tasks and detector actors). Pickles with the picture's pixels."""

    job: Job
    sample: Sample
    done: Done  # the image row, ELA record and damage found while decoding; no verdicts yet

    # What a worker pool reads from a job.
    @property
    def path(self) -> str:
        return self.job.path

    @property
    def sha256(self) -> str:
        return self.job.sha256

    @property
    def pixels(self) -> int:
        return self.job.pixels

    @property
    def detectors(self) -> tuple[str, ...]:
        return self.job.detectors


def prepare(job: Job, settings: Settings, needs: frozenset[str] | None = None) -> Prepared | Done:
    """Decode `job`'s picture and describe it if the job asks; a Done with the failure if it
    cannot be decoded. With `needs` (the union of its detectors' `needs`), the views in it are
    computed now rather than when a detector first asks, and the rest dropped: the picture is
    about to leave this process."""
    try:
        rgb, fmt, damage = decode_salvaging(job.data)
    except ImageError as exc:
        return Done(failure=(exc.kind, str(exc)))
    sample = Sample(
        job.path, job.sha256, job.data, rgb, fmt, settings.ela_quality, settings.face_crops
    )
    done = Done(damage=damage)
    if needs is not None and "ela" in needs:
        # Before describe: the stored grey ELA is then read from the difference a detector
        # will read (one JPEG round trip), not made a strip at a time on its own.
        sample.ela_difference()
    if job.describe:
        done.image, done.ela = describe(sample, settings)
    if needs is not None:
        if "faces" in needs:
            sample.faces()
        if "ela" in needs:
            sample.ela()
        else:  # describe's full-size grey difference, which no detector will read
            sample.drop_ela_differences()
    return Prepared(job, sample, done)


def work(
    job: Job | Prepared,
    detectors: Sequence[Detector],
    settings: Settings,
    detector_settings: dict[str, dict],
    stage: Callable[[str], None] = lambda name: None,
) -> Done:
    """Decode `job`'s picture once (unless it comes prepared) and run what it needs.
    `stage(name)` hears of each step before it starts (DECODING, then each detector's name): a
    worker's parent uses it to blame the right step when the work runs out of time or memory."""
    if isinstance(job, Prepared):
        prepared = job
    else:
        stage(DECODING)
        # No views made ahead here: describe's grey ELA is made in strips, and a detector
        # that reads the raw difference makes it when it asks (ela-cnn and ela-patchnet read
        # it only for pictures small enough to take whole, where one more re-save is cheap).
        prepared = prepare(job, settings)
        if isinstance(prepared, Done):
            return prepared
    done, sample = prepared.done, prepared.sample
    running = [d for d in detectors if d.name in prepared.job.detectors]
    if not any("ela" in d.needs for d in running):
        # describe's full-size grey difference (a byte a pixel), which no detector will
        # read, freed before the detectors allocate their own.
        sample.drop_ela_differences()
    for detector in running:
        stage(detector.name)
        outcome = run_detector(detector, sample, detector_settings.get(detector.name, {}))
        (done.verdicts if isinstance(outcome, VerdictRecord) else done.errors).append(outcome)
    return done
