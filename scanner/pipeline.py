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
    ELA_SCALE,
    IMAGE_SUFFIXES,
    SNIFF_BYTES,
    ImageError,
    Sample,
    decode,
    heatmap_png,
    largest_channel,
    scale_difference,
    skip_kind,
    sniff,
    to_png,
)
from scanner.store.database import (
    Batch,
    Database,
    DetectorRecord,
    ElaRecord,
    ErrorRecord,
    FileRecord,
    ImageRecord,
    VerdictRecord,
    settings_json,
)


@dataclass
class ScanStats:
    """What a scan did with every path it was given."""

    scanned: int = 0  # decoded and scored
    unchanged: int = 0  # same size and mtime as last time, nothing new to run: not read
    duplicates: int = 0  # read, but these bytes were already scanned (another path, or touched)
    not_images: int = 0  # not an image (no signature, no image name), or a folder link: skipped
    errors: int = 0  # the file could not be scanned: an error row says why
    detector_errors: int = 0  # a detector failed on an image: an error row names it
    flagged: Counter = field(default_factory=Counter)  # detector -> images it labelled fake
    skipped: Counter = field(default_factory=Counter)  # what the not_images were: text, video...
    seconds: float = 0.0

    @property
    def seen(self) -> int:
        return self.scanned + self.unchanged + self.duplicates + self.not_images + self.errors

    COUNTERS = ("scanned", "unchanged", "duplicates", "not_images", "errors", "detector_errors")

    def add(self, other: ScanStats) -> None:
        for name in (*self.COUNTERS, "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.flagged.update(other.flagged)
        self.skipped.update(other.skipped)

    def as_dict(self) -> dict:
        counts = {name: getattr(self, name) for name in self.COUNTERS}
        return {
            "seen": self.seen,
            **counts,
            "seconds": self.seconds,
            "flagged": dict(self.flagged),
            "skipped": dict(self.skipped),
        }


@dataclass
class FileOutcome:
    """What became of one path: outcome is a ScanStats counter name (scanned, errors, ...)."""

    path: str
    outcome: str
    detail: str = ""
    sha256: str | None = None


def iter_files(roots: Iterable[str | os.PathLike], follow_links: bool = False) -> Iterator[str]:
    """Absolute paths of the files under `roots`, sorted per folder.

    Symbolic links to files are followed (a broken one is yielded, to become an error row).
    Links to folders are yielded as paths (the scan counts them as skipped) unless
    `follow_links`: then the folder behind them is walked, once, whatever the number of links
    to it, so a link loop cannot trap the walk.
    """
    walked: set[tuple[int, int]] = set()  # (device, inode) of every folder walked
    for root in roots:
        root = os.path.abspath(root)
        if not os.path.isdir(root):
            yield root
            continue
        for folder, dirs, names in os.walk(root, followlinks=follow_links):
            try:
                st = os.stat(folder)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in walked:
                dirs[:] = []  # reached again through a link: its files were yielded already
                continue
            walked.add((st.st_dev, st.st_ino))
            dirs.sort()
            if not follow_links:  # os.walk lists folder links in dirs and does not enter them
                names = [*names, *(d for d in dirs if os.path.islink(os.path.join(folder, d)))]
            for name in sorted(names):
                yield os.path.join(folder, name)


def _batch_size(detector: Detector) -> int:
    """The detector's batch size, at least 1 whatever it says (0 would score nothing)."""
    size = getattr(detector, "batch_size", 16)
    return size if isinstance(size, int) and size >= 1 else 1


def _check(result) -> tuple[str | None, bytes | None]:
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


def _file_error(path: str, kind: str, message: str, st=None, sha=None) -> tuple:
    # The file row of a failed file names no image (files.sha256 references images); the
    # error row keeps the hash of its bytes.
    record = FileRecord(path, st.st_size, st.st_mtime_ns, None, "error") if st else None
    return record, ErrorRecord(path, kind, message, sha256=sha)


class Pipeline:
    """Scans paths into a Database with a fixed set of loaded detectors."""

    def __init__(
        self,
        db: Database,
        detectors: Sequence[Detector],
        settings: Settings,
        on_file: Callable[[FileOutcome], None] | None = None,
        *,
        rescan: bool = False,
    ):
        """`on_file` hears of every path once its batch is committed (the daemon logs it).
        `rescan`: read every file and run every detector again, changed or not."""
        self.db = db
        self.on_file = on_file
        self.detectors = list(detectors)
        self.settings = settings
        self.rescan = rescan
        # What each detector's verdict is made with (stored with it), and the (version,
        # settings JSON) a stored verdict must have to count as current.
        self._settings = {d.name: d.settings(settings) for d in self.detectors}
        self._wanted = {
            d.name: (d.version, settings_json(self._settings[d.name])) for d in self.detectors
        }
        self._recorded = False
        self._seen_this_scan: set[str] = set()
        self._pool: ThreadPoolExecutor | None = None

    def record_detectors(self) -> None:
        """Tell the database which detectors this pipeline runs (once per pipeline)."""
        if not self._recorded and self.detectors:
            self.db.record_detectors(
                [
                    DetectorRecord(
                        d.name, d.version, d.threshold, bool(d.enabled_by_default), d.description
                    )
                    for d in self.detectors
                ]
            )
        self._recorded = True

    def scan(
        self, paths: Iterable[str], progress: Callable[[int], None] | None = None
    ) -> ScanStats:
        """Scan `paths` (files, not folders: see iter_files) in batches; return the totals."""
        total = ScanStats()
        self.record_detectors()
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

    def _missing(self, known: dict[str, tuple] | None) -> list[Detector]:
        """Detectors with no verdict at their current version and settings, given
        {detector: (version, settings JSON)}; every detector when rescanning."""
        if self.rescan:
            return list(self.detectors)
        known = known or {}
        return [d for d in self.detectors if known.get(d.name) != self._wanted[d.name]]

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
            elif isinstance(outcome, str):  # skipped: what it is
                stats.skipped[outcome] += 1
                note(path, "not_images", outcome)
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
                to_prepare.append((path, st, data, sha, missing, self.rescan or sha not in known))

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
            if records:
                batch.images.append(records[0])
                if records[1]:
                    batch.ela.append(records[1])
            batch.files.append(FileRecord(path, st.st_size, st.st_mtime_ns, sha))
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
            size = _batch_size(detector)
            for start in range(0, len(todo), size):
                self._run(detector, todo[start : start + size], batch, stats)

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

    def _read(self, path: str, state, known: dict[str, dict[str, tuple]]):
        """None if unchanged; the kind of a skipped file (a str); (FileRecord|None,
        ErrorRecord); or the loaded file."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if os.path.islink(path):
                return _file_error(path, "broken-link", f"{os.readlink(path)} does not exist")
            return _file_error(path, "unreadable", "the file disappeared before it was read")
        except OSError as exc:
            return _file_error(path, "unreadable", exc.strerror or str(exc))
        if stat.S_ISDIR(st.st_mode):
            return "folder-link"  # iter_files yields a folder only when it is a link
        if not stat.S_ISREG(st.st_mode):
            return "special-file"
        if (
            not self.rescan
            and state is not None
            and state.size_bytes == st.st_size
            and state.mtime_ns == st.st_mtime_ns
            and (
                state.status == "error"
                or (state.sha256 in known and not self._missing(known[state.sha256]))
            )
        ):
            return None
        try:
            # Non-blocking, and the opened descriptor checked again: a file swapped for a FIFO
            # (or a device) after the stat above must not block the scan in open() or read().
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                return "special-file"
            with open(fd, "rb") as handle:
                head = handle.read(SNIFF_BYTES)
                if sniff(head) is None:
                    if Path(path).suffix.lower() not in IMAGE_SUFFIXES:
                        return skip_kind(head)
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

    def _describe(self, sample: Sample) -> tuple[ImageRecord, ElaRecord | None]:
        """The image row and its ELA PNG (None with --no-ela)."""
        width, height = sample.size
        image = ImageRecord(sample.sha256, sample.format, width, height, len(sample.data))
        if not self.settings.store_ela:
            return image, None
        difference = sample.ela_difference()
        if self.settings.ela_grey:
            difference = largest_channel(difference)
        shown = scale_difference(difference, ELA_SCALE)
        png = to_png(shown, self.settings.ela_max_side)
        shrink = min(1.0, self.settings.ela_max_side / max(shown.size))
        return image, ElaRecord(
            sample.sha256,
            sample.ela_quality,
            sample.ela_max_diff(),
            ELA_SCALE,
            max(1, round(width * shrink)),
            max(1, round(height * shrink)),
            png,
        )

    def _run(self, detector: Detector, samples: list[Sample], batch: Batch, stats: ScanStats):
        started = time.perf_counter()
        try:
            results = list(detector.predict(samples))
            if len(results) != len(samples):
                raise ValueError(f"returned {len(results)} results for {len(samples)} images")
            model_hash = detector.model_hash
            if model_hash is not None and not isinstance(model_hash, str):
                raise TypeError(f"model_hash is a {type(model_hash).__name__}, not text")
            checked = [_check(r) for r in results]
        # A broken detector costs its verdicts, not the scan; SystemExit included (a plugin must
        # not end the scan). KeyboardInterrupt is left alone: it is how a user stops a scan.
        except (Exception, SystemExit) as exc:  # noqa: BLE001
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
        rows = zip(samples, results, checked, strict=True)
        for sample, result, (problem, heatmap) in rows:
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
                    model_hash,
                    result.label,
                    result.score,
                    detector.threshold if result.label != "not-applicable" else None,
                    result.reason,
                    result.details,
                    heatmap,
                    seconds,
                    self._settings[detector.name] or None,
                )
            )
            if result.label == "fake":
                stats.flagged[detector.name] += 1
