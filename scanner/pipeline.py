"""The spine shared by `scan` and `watch`:

path -> stat (skip if unchanged) -> sniff -> bytes -> sha256 (skip if known) -> decode once
     -> ELA -> each detector that has no current verdict scores the batch -> one transaction.

Every path handed in ends as exactly one of: verdicts, unchanged, duplicate, not an image, error.
Walking folders and reading a file are in scanner/files.py; the work on one picture in
scanner/work.py; running it in worker processes in scanner/workers.py.
"""

from __future__ import annotations

import os
import socket
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace

from scanner import __version__
from scanner.config import Settings
from scanner.detectors import Detector
from scanner.files import Unlisted, file_error, iter_files, read_file
from scanner.outcomes import FileOutcome, ScanStats
from scanner.store.database import (
    Batch,
    Database,
    DetectorRecord,
    ErrorRecord,
    FileRecord,
    settings_json,
)
from scanner.work import DECODING, Done, Job
from scanner.workers import Overrun, WorkerPool, isolation_available, run_in_process, unsendable

# Paths whose stored rows are looked up at once before anything is read: unchanged files
# leave there; the rest go on in batches of Settings.batch_size.
CHECK_CHUNK = 1024
CLAIM_POLL_SECONDS = 0.5  # between looks at pictures another process is working on


def gone_from_this_host(holder: str) -> bool:
    """Whether `holder` (host:pid: a claim's holder, a watch daemon's id) is a process of this
    host that no longer runs. A process of another host, or one of another user: False."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it runs, as another user
    return False


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
        say: Callable[[str, str], None] = lambda level, message: None,
    ):
        """`on_file` hears of every path once its batch is committed (the daemon logs it).
        `rescan`: read every file and run every detector again, changed or not. `say(level,
        message)` hears of detectors disabled during the run."""
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
        self._pool: WorkerPool | None = None
        self.say = say
        self.disabled: dict[str, str] = {}  # detector -> why it stopped running in this run
        self._late_errors: list[ErrorRecord] = []
        self._stopping = False
        self._tick: Callable[[int], None] | None = None  # scan()'s progress, per path
        self.holder = f"{socket.gethostname()}:{os.getpid()}"  # in the claims table
        self._deferred: list[str] = []  # paths whose picture another process holds
        # A batch holds its claims until it is stored: no batch of sound pictures takes longer.
        self._claim_timeout = self.settings.image_timeout * self.settings.batch_size + 60
        self._in_process = False  # worker processes failed to start: work here instead
        # Stored with each file that could not be scanned: when any of these changes, the file
        # is read again (a raised size limit, a longer timeout, a scanner that decodes more).
        self._checked_with = (
            f"scanner {__version__}; max_file_mb={settings.max_file_bytes // 2**20}; "
            f"image_timeout={settings.image_timeout:g}; "
            f"worker_memory_mb={settings.worker_memory_bytes // 2**20}"
        )

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
        self,
        paths: Iterable[str],
        progress: Callable[[int], None] | None = None,
        wait_for_others: bool = True,
    ) -> ScanStats:
        """Scan `paths` (files, not folders: see iter_files) in batches; return the totals.
        `progress(1)` is called as each path gets its outcome, not once per batch. A path
        whose picture another process is working on is looked at again at the end, until
        that process stores it; with `wait_for_others` false it is left in `deferred` for the
        caller (the watch daemon queues it again rather than stop listening)."""
        total = ScanStats()
        self.record_detectors()
        self._seen_this_scan = set()  # decoded in this scan: copies in later batches are duplicates
        self._tick = progress
        chunk: list[str] = []
        try:
            for path in paths:
                if self._stopping:
                    return total
                chunk.append(path)
                if len(chunk) >= CHECK_CHUNK:
                    self._scan_chunk(chunk, total)
                    chunk = []
            if chunk:
                self._scan_chunk(chunk, total)
            # Paths whose pictures other processes were working on: by now stored (they are
            # duplicates), or their claims are free, dead or stale (taken over here).
            while wait_for_others and self._deferred and not self._stopping:
                waiting, self._deferred = self._deferred, []
                time.sleep(CLAIM_POLL_SECONDS)
                self._scan_chunk(waiting, total)
        finally:
            self._tick = None
        return total

    def list_files(self, roots: Iterable[str | os.PathLike], follow_links: bool = False):
        """Every path under `roots` to scan (iter_files); the Ray engine lists in Ray tasks."""
        return list(iter_files(roots, follow_links))

    def take_deferred(self) -> list[str]:
        """The paths left for later by a scan that did not wait for other processes."""
        deferred, self._deferred = self._deferred, []
        return deferred

    def _scan_chunk(self, paths: list[str], total: ScanStats) -> None:
        """Set aside the unchanged files of a large chunk with one look-up of their rows (a
        re-scan of a big folder is mostly these), then scan the rest in batches."""
        rest = paths
        if not self.rescan:
            started = time.perf_counter()
            unchanged = ScanStats()
            states = self.db.file_states(paths)
            known = self.db.detector_versions(s.sha256 for s in states.values() if s.sha256)
            rest = []
            for path in paths:
                state = states.get(path)
                if (
                    state is None
                    or isinstance(path, Unlisted)
                    or not self._unchanged_stat(path, state, known)
                ):
                    rest.append(path)
                    continue
                unchanged.unchanged += 1
                if self._tick:
                    self._tick(1)
                if self.on_file:
                    self.on_file(FileOutcome(path, "unchanged", "", state.sha256))
            unchanged.seconds = time.perf_counter() - started
            total.add(unchanged)
        for start in range(0, len(rest), self.settings.batch_size):
            if self._stopping:
                return
            total.add(self.scan_batch(rest[start : start + self.settings.batch_size]))

    def _unchanged_stat(self, path: str, state, known: dict[str, dict[str, tuple]]) -> bool:
        try:
            st = os.stat(path)
        except OSError:
            return False  # scan_batch says what is wrong with it
        return stat.S_ISREG(st.st_mode) and self._unchanged(st, state, known)

    def _unchanged(self, st: os.stat_result, state, known: dict[str, dict[str, tuple]]) -> bool:
        """Whether a file with this stat and stored row needs no work: same size and time, and
        either an error row from the same limits or every detector's verdict current."""
        return (
            not self.rescan
            and state is not None
            and state.size_bytes == st.st_size
            and state.mtime_ns == st.st_mtime_ns
            and (
                (state.status == "error" and state.checked_with == self._checked_with)
                or (state.sha256 in known and not self._missing(known[state.sha256]))
            )
        )

    def _running(self) -> list[Detector]:
        """The detectors in use that have not been disabled during this scan."""
        return [d for d in self.detectors if d.name not in self.disabled]

    def _missing(self, known: dict[str, tuple] | None) -> list[Detector]:
        """Detectors with no verdict at their current version and settings, given
        {detector: (version, settings JSON)}; every detector when rescanning."""
        running = self._running()
        if self.rescan:
            return running
        known = known or {}
        return [d for d in running if known.get(d.name) != self._wanted[d.name]]

    def scan_batch(self, paths: Sequence[str]) -> ScanStats:
        started = time.perf_counter()
        stats = ScanStats()
        batch = Batch()
        states = self.db.file_states(paths)
        known = self.db.detector_versions(s.sha256 for s in states.values() if s.sha256)
        loaded: list[tuple[str, os.stat_result, bytes, str, int]] = []

        outcomes: list[FileOutcome] = []

        def note(path: str, outcome: str, detail: str = "", sha: str | None = None) -> None:
            setattr(stats, outcome, getattr(stats, outcome) + 1)
            outcomes.append(FileOutcome(path, outcome, detail, sha))
            if self._tick:
                self._tick(1)

        for path, outcome in zip(paths, self._load(paths, states, known), strict=True):
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

        known.update(self.db.detector_versions(sha for *_, sha, _ in loaded if sha not in known))
        to_prepare: list[Job] = []  # the first copy of each picture that needs work
        stats_of: dict[str, os.stat_result] = {}
        preparing: set[str] = set()
        copies: list[tuple[str, os.stat_result, str]] = []  # later copies in this batch
        for path, st, data, sha, pixels in loaded:
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
                stats_of[path] = st
                to_prepare.append(
                    Job(
                        path,
                        sha,
                        data,
                        tuple(d.name for d in missing),
                        self.rescan or sha not in known,
                        pixels,
                    )
                )

        # Processes sharing this database work only on pictures they hold a claim on; a path
        # whose picture another holds waits for the end of the scan (its file row needs the
        # picture's row, which that process writes).
        held = self.db.claim(
            [job.sha256 for job in to_prepare],
            self.holder,
            self._claim_timeout,
            gone_from_this_host,
        )
        batch.released, batch.holder = sorted(held), self.holder
        # Stored by another process between this batch's look-up and its claim: done.
        now_known = self.db.detector_versions(held)
        held = {sha for sha in held if sha not in now_known or self._missing(now_known[sha])}
        self._deferred += [job.path for job in to_prepare if job.sha256 not in held]
        self._deferred += [path for path, _, sha in copies if sha not in held and sha in preparing]
        copies = [c for c in copies if c[2] in held]
        to_prepare = [job for job in to_prepare if job.sha256 in held]

        failed: dict[str, tuple[str, str]] = {}  # sha -> (kind, message) of bytes that failed
        finished: set[str] = set()
        for job, done in self._work(to_prepare):
            path, st = job.path, stats_of[job.path]
            if done.failure:
                failed[job.sha256] = done.failure
                self._image_error(path, st, job.sha256, *done.failure, batch, note)
                continue
            finished.add(job.sha256)
            self._seen_this_scan.add(job.sha256)
            if done.image:
                batch.images.append(done.image)
            if done.ela:
                batch.ela.append(done.ela)
            batch.files.append(FileRecord(path, st.st_size, st.st_mtime_ns, job.sha256))
            batch.verdicts.extend(done.verdicts)
            batch.errors.extend(done.errors)
            stats.detector_errors += len(done.errors)
            for verdict in done.verdicts:
                if verdict.label == "fake":
                    stats.flagged[verdict.detector] += 1
            if done.damage:
                kind, message = done.damage
                batch.errors.append(ErrorRecord(path, kind, message, sha256=job.sha256))
            note(path, "scanned", sha=job.sha256)
        # A picture judged before by some of the detectors in use ran only the others: its
        # stored verdicts of the rest count in the summary too, so that "flagged by copy-move:
        # 2 of 9" stays true when a scan adds a detector (-d) to pictures already judged.
        running = {d.name for d in self._running()}
        kept = {
            job.sha256: rest
            for job in to_prepare
            if job.sha256 in finished and not job.describe
            if (rest := running.difference(job.detectors))
        }
        if kept:
            for sha, names in self.db.fake_labels(kept).items():
                for name in names & kept[sha]:
                    stats.flagged[name] += 1
        for path, st, sha in copies:  # each copy of bad bytes gets its own error row
            if sha in failed:
                self._image_error(path, st, sha, *failed[sha], batch, note)
            elif sha in finished:
                batch.files.append(FileRecord(path, st.st_size, st.st_mtime_ns, sha))
                note(path, "duplicates", sha=sha)
            # else: stopped before its picture was done; the next scan takes it

        batch.errors.extend(self._late_errors)
        stats.detector_errors += len(self._late_errors)
        self._late_errors = []
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

    def _load(self, paths: Sequence[str], states: dict, known: dict[str, dict[str, tuple]]):
        """Each path's outcome (see _read), in order. The Ray engine reads in Ray tasks."""
        return [self._read(path, states.get(path), known) for path in paths]

    def _read(self, path: str, state, known: dict[str, dict[str, tuple]]):
        """None if unchanged; the kind of a skipped file (a str); (FileRecord|None,
        ErrorRecord); or the loaded file: (path, stat, bytes, sha256, pixels)."""
        return read_file(
            path,
            self.settings.max_file_bytes,
            self._checked_with,
            lambda st: self._unchanged(st, state, known),
        )

    def stop(self) -> None:
        """Finish soon: work in hand is abandoned (its files are left for the next scan), what
        is done is stored. Safe to call from a signal handler."""
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    def close(self) -> None:
        """End the worker processes."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _work(self, jobs: list[Job]) -> Iterator[tuple[Job, Done]]:
        """Each job's Done, from worker processes (or this one with SCANNER_WORKERS=0). A
        detector that hangs, explodes or kills its worker gets an error row, is disabled for
        the rest of the run, and the picture is worked on again without it."""
        if self._in_process or self.settings.workers == 0 or not isolation_available():
            yield from run_in_process(
                jobs, self.detectors, self.settings, self._settings, lambda: self._stopping
            )
            return
        if self._pool is None:
            for name, why in unsendable(self.detectors).items():
                self.disabled[name] = why
                self.say("warning", f"detector {name} disabled: {why}")
            sendable = [d for d in self.detectors if d.name not in self.disabled]
            self._pool = WorkerPool(sendable, self.settings, self._settings)
        while jobs:
            again: list[Job] = []
            finished: set[int] = set()
            try:
                for job, outcome in self._pool.run(jobs, lambda: self._stopping):
                    finished.add(id(job))
                    if isinstance(outcome, Done):
                        yield job, outcome
                    elif outcome.stage == DECODING:
                        yield job, Done(failure=(outcome.kind, outcome.message))
                    else:
                        again.append(self._blame(job, outcome))
            except (OSError, EOFError, RuntimeError) as exc:  # a worker process cannot start
                self.say(
                    "warning",
                    f"worker processes cannot start ({type(exc).__name__}: {exc}); images are "
                    "worked on in the scanning process, without time or memory limits",
                )
                self._in_process = True
                self.close()
                rest = [j for j in jobs if id(j) not in finished] + again
                yield from self._work(rest)
                return
            jobs = again

    def _blame(self, job: Job, overrun: Overrun) -> Job:
        """Record a detector's overrun as its error on this picture and disable it; the job
        without it."""
        name = overrun.stage
        if name not in self.disabled:
            self.disabled[name] = f"{overrun.kind}: {overrun.message}"
            self.say(
                "warning",
                f"detector {name} disabled for the rest of this run: "
                f"{overrun.kind} on {job.path}: {overrun.message}",
            )
        self._late_errors.append(overrun.error_row(job))
        return replace(job, detectors=tuple(d for d in job.detectors if d not in self.disabled))

    def _image_error(self, path, st, sha, kind: str, message: str, batch: Batch, note) -> None:
        file_record, error = file_error(path, kind, message, st, sha, self._checked_with)
        batch.files.append(file_record)
        batch.errors.append(error)
        note(path, "errors", f"{kind}: {message}", sha)
