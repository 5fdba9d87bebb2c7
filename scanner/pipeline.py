"""The spine shared by `scan` and `watch`:

path -> stat (skip if unchanged) -> sniff -> bytes -> sha256 (skip if known) -> decode once
     -> ELA -> each detector that has no current verdict scores the batch -> one transaction.

Every path handed in ends as exactly one of: verdicts, unchanged, duplicate, not an image, error.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from scanner.config import Settings
from scanner.detectors import Detector, Result
from scanner.imaging import (
    IMAGE_SUFFIXES,
    SNIFF_BYTES,
    ImageError,
    Sample,
    decode,
    heatmap_png,
    sniff,
    to_png,
)
from scanner.store.database import (
    Batch,
    Database,
    ElaRecord,
    ErrorRecord,
    FileRecord,
    ImageRecord,
    VerdictRecord,
)


@dataclass
class ScanStats:
    """What a scan did with every path it was given."""

    scanned: int = 0  # decoded and scored
    unchanged: int = 0  # same size and mtime as last time, nothing new to run: not read
    duplicates: int = 0  # read, but these bytes were already scanned (another path, or touched)
    not_images: int = 0  # no image signature and no image file name: skipped
    errors: int = 0  # the file could not be scanned: an error row says why
    detector_errors: int = 0  # a detector failed on an image: an error row names it
    flagged: Counter = field(default_factory=Counter)  # detector -> images it labelled fake
    seconds: float = 0.0

    @property
    def seen(self) -> int:
        return self.scanned + self.unchanged + self.duplicates + self.not_images + self.errors

    COUNTERS = ("scanned", "unchanged", "duplicates", "not_images", "errors", "detector_errors")

    def add(self, other: ScanStats) -> None:
        for name in (*self.COUNTERS, "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.flagged.update(other.flagged)

    def as_dict(self) -> dict:
        counts = {name: getattr(self, name) for name in self.COUNTERS}
        return {"seen": self.seen, **counts, "seconds": self.seconds, "flagged": dict(self.flagged)}


@dataclass
class FileOutcome:
    """What became of one path: outcome is a ScanStats counter name (scanned, errors, ...)."""

    path: str
    outcome: str
    detail: str = ""
    sha256: str | None = None


def iter_files(roots: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Absolute paths of the files under `roots`, sorted per folder.

    Symbolic links to files are followed (a broken one is yielded, to become an error row);
    links to folders are not, so a link loop cannot trap the walk.
    """
    for root in roots:
        root = os.path.abspath(root)
        if not os.path.isdir(root):
            yield root
            continue
        for folder, dirs, names in os.walk(root):
            dirs.sort()
            for name in sorted(names):
                yield os.path.join(folder, name)


def _file_error(path: str, kind: str, message: str, st=None, sha=None) -> tuple:
    record = FileRecord(path, st.st_size, st.st_mtime_ns, sha, "error") if st else None
    return record, ErrorRecord(path, kind, message, sha256=sha)


class Pipeline:
    """Scans paths into a Database with a fixed set of loaded detectors."""

    def __init__(
        self,
        db: Database,
        detectors: Sequence[Detector],
        settings: Settings,
        on_file: Callable[[FileOutcome], None] | None = None,
    ):
        """`on_file` hears of every path once its batch is committed (the daemon logs it)."""
        self.db = db
        self.on_file = on_file
        self.detectors = list(detectors)
        self.settings = settings
        self._seen_this_scan: set[str] = set()
        self._pool: ThreadPoolExecutor | None = None

    def scan(
        self, paths: Iterable[str], progress: Callable[[int], None] | None = None
    ) -> ScanStats:
        """Scan `paths` (files, not folders: see iter_files) in batches; return the totals."""
        total = ScanStats()
        self._seen_this_scan = set()  # decoded in this scan: copies in later batches are duplicates
        chunk: list[str] = []
        for path in paths:
            chunk.append(path)
            if len(chunk) >= self.settings.batch_size:
                total.add(self.scan_batch(chunk))
                if progress:
                    progress(len(chunk))
                chunk = []
        if chunk:
            total.add(self.scan_batch(chunk))
            if progress:
                progress(len(chunk))
        return total

    def _missing(self, known: dict[str, str] | None) -> list[Detector]:
        """Detectors with no verdict at their current version, given {detector: version}."""
        known = known or {}
        return [d for d in self.detectors if known.get(d.name) != d.version]

    def scan_batch(self, paths: Sequence[str]) -> ScanStats:
        started = time.perf_counter()
        stats = ScanStats()
        batch = Batch()
        states = self.db.file_states(paths)
        known = self.db.detector_versions(s.sha256 for s in states.values() if s.sha256)
        loaded: list[tuple[str, os.stat_result, bytes, str]] = []

        outcomes: list[FileOutcome] = []

        def note(path: str, outcome: str, detail: str = "", sha: str | None = None) -> None:
            setattr(stats, outcome, getattr(stats, outcome) + 1)
            outcomes.append(FileOutcome(path, outcome, detail, sha))

        for path in paths:
            outcome = self._read(path, states.get(path), known)
            if outcome is None:
                note(path, "unchanged")
            elif outcome == "not-image":
                note(path, "not_images")
            elif isinstance(outcome, tuple) and isinstance(outcome[1], ErrorRecord):
                file_record, error = outcome
                if file_record:
                    batch.files.append(file_record)
                batch.errors.append(error)
                note(path, "errors", f"{error.kind}: {error.message}")
            else:
                loaded.append(outcome)

        known.update(self.db.detector_versions(sha for *_, sha in loaded if sha not in known))
        to_prepare: list[tuple] = []  # the first copy of each picture that needs work
        preparing: set[str] = set()
        copies: list[tuple[str, os.stat_result, str]] = []  # later copies in this batch
        for path, st, data, sha in loaded:
            missing = self._missing(known.get(sha))
            if sha in self._seen_this_scan or (sha in known and not missing):
                batch.files.append(FileRecord(path, st.st_size, st.st_mtime_ns, sha))
                state = states.get(path)
                touched = state and state.sha256 == sha and state.status == "ok"
                note(path, "unchanged" if touched else "duplicates", sha=sha)
            elif sha in preparing:
                copies.append((path, st, sha))
            else:
                preparing.add(sha)
                to_prepare.append((path, st, data, sha, missing, sha not in known))

        samples: list[tuple[Sample, list[Detector]]] = []
        failed: dict[str, ImageError] = {}
        for (path, st, _, sha, missing, _new), prepared in zip(
            to_prepare, self._map(self._prepare, to_prepare), strict=True
        ):
            if isinstance(prepared, ImageError):
                failed[sha] = prepared
                self._decode_error(path, st, sha, prepared, batch, note)
                continue
            sample, records = prepared
            self._seen_this_scan.add(sha)
            batch.files.append(FileRecord(path, st.st_size, st.st_mtime_ns, sha))
            if records:
                batch.images.append(records[0])
                batch.ela.append(records[1])
            samples.append((sample, missing))
            note(path, "scanned", sha=sha)
        for path, st, sha in copies:  # each copy of bad bytes gets its own error row
            if sha in failed:
                self._decode_error(path, st, sha, failed[sha], batch, note)
            else:
                batch.files.append(FileRecord(path, st.st_size, st.st_mtime_ns, sha))
                note(path, "duplicates", sha=sha)

        for detector in self.detectors:
            todo = [s for s, missing in samples if detector in missing]
            for start in range(0, len(todo), max(1, detector.batch_size)):
                self._run(detector, todo[start : start + detector.batch_size], batch, stats)

        if len(batch):
            self.db.save(batch)
        stats.seconds = time.perf_counter() - started
        if self.on_file:
            self._report(outcomes, batch)
        return stats

    def _report(self, outcomes: list[FileOutcome], batch: Batch) -> None:
        verdicts: dict[str, list[str]] = {}
        for v in batch.verdicts:
            score = "" if v.score is None else f" {v.score:.3f}"
            verdicts.setdefault(v.sha256, []).append(f"{v.detector}={v.label}{score}")
        for item in outcomes:
            if item.outcome == "scanned":
                item.detail = ", ".join(verdicts.get(item.sha256, [])) or "no verdicts"
            self.on_file(item)

    def _read(self, path: str, state, known: dict[str, dict[str, str]]):
        """None if unchanged; "not-image"; (FileRecord|None, ErrorRecord); or the loaded file."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if os.path.islink(path):
                return _file_error(path, "broken-link", f"{os.readlink(path)} does not exist")
            return _file_error(path, "unreadable", "the file disappeared before it was read")
        except OSError as exc:
            return _file_error(path, "unreadable", exc.strerror or str(exc))
        if not stat.S_ISREG(st.st_mode):
            return "not-image"
        if (
            state is not None
            and state.size_bytes == st.st_size
            and state.mtime_ns == st.st_mtime_ns
            and (
                state.status == "error"
                or (state.sha256 in known and not self._missing(known[state.sha256]))
            )
        ):
            return None
        try:
            with open(path, "rb") as handle:
                head = handle.read(SNIFF_BYTES)
                if sniff(head) is None:
                    if Path(path).suffix.lower() not in IMAGE_SUFFIXES:
                        return "not-image"
                    return _file_error(
                        path, "corrupt", "named like an image but has no image signature", st
                    )
                if st.st_size > self.settings.max_file_bytes:
                    limit = self.settings.max_file_bytes // (1024 * 1024)
                    return _file_error(
                        path, "too-large", f"{st.st_size} bytes is over the {limit} MB limit", st
                    )
                data = head + handle.read()
        except OSError as exc:
            return _file_error(path, "unreadable", exc.strerror or str(exc))
        return path, st, data, hashlib.sha256(data).hexdigest()

    def _map(self, fn, items: list) -> list:
        if self.settings.workers <= 1 or len(items) <= 1:
            return [fn(item) for item in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.settings.workers, thread_name_prefix="prepare")
        return list(self._pool.map(fn, items))

    def _prepare(self, item: tuple):
        """Decode one picture and compute what it needs; runs in a worker thread (Pillow,
        zlib and OpenCV release the GIL). Returns (Sample, records or None) or the ImageError."""
        path, _st, data, sha, missing, new = item
        try:
            rgb, fmt = decode(data)
        except ImageError as exc:
            return exc
        sample = Sample(
            path, sha, data, rgb, fmt, self.settings.ela_quality, self.settings.face_crops
        )
        needs = set().union(*(d.needs for d in missing))
        if "faces" in needs:
            sample.faces()  # warm the view here, in parallel, not in the detector
        return sample, self._describe(sample) if new else None

    def _decode_error(self, path, st, sha, exc: ImageError, batch: Batch, note) -> None:
        file_record, error = _file_error(path, exc.kind, str(exc), st, sha)
        batch.files.append(file_record)
        batch.errors.append(error)
        note(path, "errors", f"{exc.kind}: {exc}", sha)

    def _describe(self, sample: Sample) -> tuple[ImageRecord, ElaRecord]:
        """The image row and its ELA PNG."""
        width, height = sample.size
        image = ImageRecord(sample.sha256, sample.format, width, height, len(sample.data))
        ela = sample.ela()
        png = to_png(ela, self.settings.ela_max_side)
        scale = min(1.0, self.settings.ela_max_side / max(ela.size))
        return image, ElaRecord(
            sample.sha256,
            sample.ela_quality,
            sample.ela_max_diff(),
            max(1, round(width * scale)),
            max(1, round(height * scale)),
            png,
        )

    def _run(self, detector: Detector, samples: list[Sample], batch: Batch, stats: ScanStats):
        started = time.perf_counter()
        try:
            results = detector.predict(samples)
            if len(results) != len(samples):
                raise ValueError(f"returned {len(results)} results for {len(samples)} images")
            problems = [r.problem() if isinstance(r, Result) else "not a Result" for r in results]
            heatmaps = [heatmap_png(r.heatmap) if r.heatmap is not None else None for r in results]
        except Exception as exc:  # noqa: BLE001 - a broken detector costs its verdicts, not the scan
            message = f"{type(exc).__name__}: {exc}"
            for sample in samples:
                batch.errors.append(
                    ErrorRecord(
                        sample.path, "detector-error", message, detector.name, sample.sha256
                    )
                )
            stats.detector_errors += len(samples)
            return
        seconds = (time.perf_counter() - started) / max(1, len(samples))
        rows = zip(samples, results, problems, heatmaps, strict=True)
        for sample, result, problem, heatmap in rows:
            if problem:
                batch.errors.append(
                    ErrorRecord(
                        sample.path, "detector-error", problem, detector.name, sample.sha256
                    )
                )
                stats.detector_errors += 1
                continue
            batch.verdicts.append(
                VerdictRecord(
                    sample.sha256,
                    detector.name,
                    detector.version,
                    detector.model_hash,
                    result.label,
                    result.score,
                    detector.threshold if result.label != "not-applicable" else None,
                    result.reason,
                    result.details,
                    heatmap,
                    seconds,
                )
            )
            if result.label == "fake":
                stats.flagged[detector.name] += 1
