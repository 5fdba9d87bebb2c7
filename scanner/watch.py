"""`scanner watch`: file events queue paths; complete files go through the scan pipeline.

The event handler never scans. It records, per path, when it last changed and how many
writers hold it open. The main loop takes the paths that are complete (no writer holds them
open, no event for `settle` seconds, size and mtime unchanged between two looks) and hands them
to the same Pipeline that `scanner scan` uses. A catch-up pass at start, and a reconcile pass
every `reconcile_every` seconds, walk the folders for whatever arrived while the daemon was down
or whose events the kernel dropped; unchanged files cost a stat each.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from scanner.files import iter_files
from scanner.outcomes import ScanStats
from scanner.pipeline import Pipeline
from scanner.store import Database, DatabaseError
from scanner.store.database import utcnow

log = logging.getLogger("scanner.watch")

TEMPORARY_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", ".swp")
# A file held open this long without any event is scanned anyway (a writer that hung).
STALE_OPEN_SECONDS = 120.0


def is_temporary(path: str) -> bool:
    """Names that writers use until a file is complete: dot-files, *.part, *.tmp, ~lock files."""
    name = os.path.basename(path)
    return name.startswith((".", "~")) or name.lower().endswith(TEMPORARY_SUFFIXES)


@dataclass
class _Entry:
    last_event: float
    seen: tuple[int, int] | None = None  # (size, mtime_ns) at the previous look


class PendingFiles:
    """Paths waiting to be complete. Thread-safe: the observer thread adds, the loop takes."""

    def __init__(self, settle: float):
        self.settle = settle
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._open: dict[str, int] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def touch(self, path: str) -> None:
        if is_temporary(path):
            return
        with self._lock:
            entry = self._entries.setdefault(path, _Entry(0.0))
            entry.last_event = time.monotonic()

    def opened(self, path: str) -> None:
        with self._lock:
            self._open[path] = self._open.get(path, 0) + 1

    def closed(self, path: str) -> None:
        with self._lock:
            count = self._open.pop(path, 0) - 1
            if count > 0:
                self._open[path] = count

    def take_ready(self, limit: int) -> list[str]:
        """Up to `limit` complete paths, oldest first; removed from the queue."""
        now = time.monotonic()
        ready: list[str] = []
        with self._lock:
            quiet = [
                (e.last_event, p)
                for p, e in self._entries.items()
                if now - e.last_event >= self.settle
            ]
            for _, path in sorted(quiet):
                entry = self._entries[path]
                held = self._open.get(path, 0) > 0
                if held and now - entry.last_event < STALE_OPEN_SECONDS:
                    continue
                try:
                    st = os.stat(path)
                except OSError:  # gone, or renamed away (the rename queued the new name)
                    if not os.path.islink(path):
                        del self._entries[path]
                        continue
                    st = None  # a broken link: let the pipeline record it
                seen = (st.st_size, st.st_mtime_ns) if st else (-1, -1)
                if entry.seen != seen:
                    entry.seen, entry.last_event = seen, now  # changed since the last look
                    continue
                del self._entries[path]
                ready.append(path)
                if len(ready) >= limit:
                    break
        return ready


def _identity(folder: str) -> tuple[int, int] | None:
    """(device, inode) of the folder a path names now; None when there is none."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


class _Handler(FileSystemEventHandler):
    def __init__(self, pending: PendingFiles, roots: Sequence[str] = ()):
        self.pending = pending
        self.roots = set(roots)
        # Roots deleted or moved away: their watch is dead even if a new folder takes the same
        # inode number, so the daemon re-arms them (Watcher.check_roots).
        self.lost: set[str] = set()

    def on_deleted(self, event: FileSystemEvent) -> None:
        if os.fsdecode(event.src_path) in self.roots:
            self.lost.add(os.fsdecode(event.src_path))

    def _tree(self, folder: str) -> None:
        for path in iter_files([folder]):
            self.pending.touch(path)

    def on_created(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            self._tree(event.src_path)
        else:
            self.pending.touch(event.src_path)

    def on_modified(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self.pending.touch(event.src_path)

    def on_moved(self, event: FileSystemEvent) -> None:
        if os.fsdecode(event.src_path) in self.roots:
            self.lost.add(os.fsdecode(event.src_path))
        dest = os.fsdecode(event.dest_path)
        if event.is_directory:
            self._tree(dest)
        else:
            self.pending.touch(dest)

    def on_opened(self, event: FileSystemEvent) -> None:
        self.pending.opened(event.src_path)

    def on_closed(self, event: FileSystemEvent) -> None:
        self.pending.closed(event.src_path)
        self.pending.touch(event.src_path)

    def on_closed_no_write(self, event: FileSystemEvent) -> None:
        self.pending.closed(event.src_path)


class Watcher:
    """Watches folders and scans what arrives; `stop()` ends it after the batch in hand."""

    def __init__(
        self,
        roots: Sequence[str],
        db: Database,
        pipeline: Pipeline,
        *,
        polling: bool = False,
        settle: float | None = None,
        reconcile_every: float = 300.0,
        heartbeat_every: float = 5.0,
        batch_size: int = 16,
    ):
        self.roots = [os.path.abspath(r) for r in roots]
        self.db = db
        self.pipeline = pipeline
        self.polling = polling
        # Polling sees a change only once per interval (1 s): wait two intervals.
        self.pending = PendingFiles(settle if settle is not None else (2.0 if polling else 0.25))
        self.reconcile_every = reconcile_every
        self.heartbeat_every = heartbeat_every
        self.batch_size = batch_size
        self.totals = ScanStats()
        self.last_scan_at = None
        self.started_at = utcnow()
        self.id = f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._heartbeat_failing = False
        self._observer = None
        self._handler: _Handler | None = None
        self._watches: dict[str, object] = {}  # root -> the observer's watch of it
        self._identity: dict[str, tuple[int, int] | None] = {}  # root -> (device, inode)

    def stop(self) -> None:
        self._stop.set()

    def _scan(self, paths: Iterable[str]) -> None:
        """Scan, retrying with backoff while the database is locked or unreachable."""
        paths = list(paths)
        delay = 1.0
        while True:
            try:
                # A picture another process is working on goes back in the queue: waiting for
                # it here would stop this daemon listening and beating.
                stats = self.pipeline.scan(paths, wait_for_others=False)
                break
            except DatabaseError as exc:
                log.warning("database unavailable (%s); retrying in %.0f s", exc, delay)
                if self._stop.wait(delay):
                    log.warning(
                        "stopping with %d files not stored; the next start scans them", len(paths)
                    )
                    return
                delay = min(delay * 2, 60.0)
        for path in self.pipeline.take_deferred():
            self.pending.touch(path)
        self.totals.add(stats)
        if stats.scanned or stats.errors or stats.duplicates:
            self.last_scan_at = utcnow()

    def catch_up(self, first: bool = False) -> None:
        """Scan every file under the roots that is new or changed since it was stored. Logged
        at start, and later only when it found something."""
        started = time.monotonic()
        before = self.totals.scanned + self.totals.errors
        files = (p for p in iter_files(self.roots) if not is_temporary(p))
        chunk: list[str] = []
        for path in files:
            chunk.append(path)
            if len(chunk) >= 512:
                self._scan(chunk)
                chunk = []
                if self._stop.is_set():
                    return
        if chunk:
            self._scan(chunk)
        found = self.totals.scanned + self.totals.errors - before
        if first or found:
            log.info(
                "catch-up pass: %d new or changed files in %.1f s",
                found,
                time.monotonic() - started,
            )

    def heartbeat(self, stopped: bool = False) -> None:
        try:
            self.db.heartbeat(
                {
                    "id": self.id,
                    "roots": os.pathsep.join(self.roots),
                    "started_at": self.started_at,
                    "stopped_at": utcnow() if stopped else None,
                    "queue_length": len(self.pending),
                    "scanned": self.totals.scanned,
                    "errors": self.totals.errors,
                    "last_scan_at": self.last_scan_at,
                    "heartbeat_every": self.heartbeat_every,
                }
            )
        except DatabaseError as exc:
            if not self._heartbeat_failing:  # a change of state: logged once, not every beat
                log.warning("heartbeats not stored: %s", exc)
            self._heartbeat_failing = True
            return
        if self._heartbeat_failing:
            log.info("heartbeats stored again")
        self._heartbeat_failing = False

    def _arm(self, root: str) -> None:
        """Watch `root` as it is now (the folder that the path names at this moment)."""
        old = self._watches.pop(root, None)
        if old is not None:
            with contextlib.suppress(Exception):  # its folder may be gone already
                self._observer.unschedule(old)
        self._identity[root] = _identity(root)
        if self._identity[root] is not None:
            self._watches[root] = self._observer.schedule(self._handler, root, recursive=True)

    def check_roots(self) -> None:
        """A watched folder deleted, re-created or replaced by a link leaves the observer
        watching nothing: notice it, watch the new folder and catch up on what it holds."""
        for root in self.roots:
            now = _identity(root)
            lost = root in self._handler.lost
            if now == self._identity.get(root) and not (lost and now is not None):
                continue
            self._handler.lost.discard(root)
            if now is None:
                log.warning("watched folder %s is gone; waiting for it to come back", root)
                self._arm(root)
                continue
            log.warning("watched folder %s was replaced; watching the new one", root)
            try:
                self._arm(root)
            except OSError as exc:  # replaced again, or unreadable: the next look tries again
                log.warning("cannot watch %s: %s", root, exc)
                self._identity[root] = None
                continue
            self.catch_up()

    def run(self, ready: Callable[[], None] | None = None) -> None:
        observer = PollingObserver() if self.polling else Observer()
        self._observer, self._handler = observer, _Handler(self.pending, self.roots)
        for root in self.roots:
            self._arm(root)
        observer.start()  # before the catch-up pass, so that nothing falls between the two
        try:
            self.heartbeat()
            self.catch_up(first=True)
            if ready:
                ready()
            next_reconcile = time.monotonic() + self.reconcile_every
            next_beat = time.monotonic() + self.heartbeat_every
            while not self._stop.is_set():
                paths = self.pending.take_ready(self.batch_size)
                if paths:
                    self._scan(paths)
                elif time.monotonic() >= next_reconcile:
                    self.catch_up()
                    next_reconcile = time.monotonic() + self.reconcile_every
                else:
                    self._stop.wait(0.1)
                if time.monotonic() >= next_beat:
                    self.check_roots()
                    # To the database only (`scanner status` reads it): an idle daemon writes
                    # no log lines, only files it scanned and changes of state.
                    self.heartbeat()
                    next_beat = time.monotonic() + self.heartbeat_every
        finally:
            observer.stop()
            observer.join(timeout=5)
            self.heartbeat(stopped=True)
            log.info(
                "stopped: scanned=%d errors=%d, %d queued files left for the next start",
                self.totals.scanned,
                self.totals.errors,
                len(self.pending),
            )
