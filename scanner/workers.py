"""Image work in worker processes that the scan can time out, cap and replace.

Decoding untrusted files and running third-party detectors are the two things a scan does not
control: a decoder can spin for minutes on a crafted JPEG, a plugin can hang or allocate
gigabytes. Each runs in a forked worker process, one picture at a time. The scanning process
keeps the database, and watches every worker:

- time: each picture has a budget (SCANNER_IMAGE_TIMEOUT seconds) for all of its work;
- memory: a worker whose resident memory passes SCANNER_WORKER_MEMORY_MB is killed;
- pixels in flight: pictures start only while the pixels being worked on stay within
  SCANNER_PIXEL_BUDGET_MP (a picture larger than that runs alone), so memory is bounded by
  pixels, not by the number of files;
- death: a worker that crashes (segfault, killed for memory by the kernel) is replaced.

A worker reports each stage before it starts (decoding, then each detector), so that an
overrun is blamed on the right step: a detector that hangs or explodes is reported and
disabled for the rest of the run; a picture that cannot be decoded in time is an error row.
Workers start from a fork server (a clean process that has imported the scanner, started
before any model runs or any thread of the watch daemon exists), and receive the loaded
detectors pickled: a detector must be picklable once loaded (an ONNX session is not: scanner.onnx
makes one in each worker on first use). A detector that cannot be sent is reported and not run.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import pickle
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

import cv2
from threadpoolctl import threadpool_limits

from scanner.config import Settings, usable_cores
from scanner.detectors import Detector
from scanner.store.database import ErrorRecord
from scanner.work import DECODING, Done, Job, work

POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Overrun:
    """A picture whose work did not finish: `kind` is timeout, out-of-memory or crashed;
    `stage` is DECODING or the name of the detector that was running."""

    kind: str
    message: str
    stage: str

    def error_row(self, job: Job) -> ErrorRecord:
        """The error row of the detector that overran (its stage) on this picture."""
        message = f"{self.kind}: {self.message}"
        return ErrorRecord(job.path, "detector-error", message, self.stage, job.sha256)


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the scanning process dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def share_threads(threads: int) -> None:
    """Hold this worker's thread pools to its share of the cores. Several workers each running
    one thread per core fight over the cores: onnxruntime's pool, OpenCV's (SIFT, resizing,
    face search) and numpy's BLAS (copy-move's descriptor matching, metadata's DCT). OpenBLAS
    threads also spin while they wait for work: left at one per core in two workers on 2
    cores, they made a default scan of CASIA-size photos 1.4-1.8x slower (2026-12-07,
    benchmarks/bench_targets.py)."""
    os.environ.setdefault("SCANNER_ONNX_THREADS", str(threads))
    cv2.setNumThreads(threads)
    threadpool_limits(threads, user_api="blas")  # for the life of the process


def _serve(conn: Connection, detectors, settings: Settings, detector_settings, threads: int):
    """A worker's life: take a Job, report stages, send back Done; exit on None or EOF."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the scanning process's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    share_threads(threads)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            done = work(job, detectors, settings, detector_settings, lambda s: conn.send(s))
        except BaseException as exc:  # noqa: BLE001 - reported as this picture's failure
            done = Done(failure=("crashed", f"{type(exc).__name__}: {exc}"))
        conn.send(done)


def _resident_bytes(pid: int) -> int:
    """Resident memory of a process (Linux /proc; 0 where it cannot be read)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class _Worker:
    def __init__(self, context, args):
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(child, *args), daemon=True, name="scanner-worker"
        )
        self.process.start()
        child.close()
        self.job: Job | None = None
        self.stage = DECODING
        self.deadline = 0.0

    def give(self, job: Job, budget: float) -> None:
        self.job, self.stage, self.deadline = job, DECODING, time.monotonic() + budget
        self.conn.send(job)

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


def isolation_available() -> bool:
    return "forkserver" in multiprocessing.get_all_start_methods()


def unsendable(detectors: Sequence[Detector]) -> dict[str, str]:
    """{name: why} for the detectors that cannot be sent to a worker process."""
    found = {}
    for detector in detectors:
        try:
            pickle.dumps(detector)
        except Exception as exc:  # noqa: BLE001 - whatever the plugin holds
            found[detector.name] = (
                f"cannot be sent to a worker process ({type(exc).__name__}: {exc}); "
                "SCANNER_WORKERS=0 runs it in the scanning process"
            )
    return found


class WorkerPool:
    """Runs Jobs in worker processes; see the module's text for what it guards against."""

    def __init__(
        self,
        detectors: Sequence[Detector],
        settings: Settings,
        detector_settings: dict[str, dict],
        threads: int | None = None,
    ):
        self.settings = settings
        self.size = settings.workers
        threads = threads or max(1, usable_cores() // self.size)  # each worker's share
        self._args = (detectors, settings, detector_settings, threads)
        self._context = multiprocessing.get_context("forkserver")
        # The fork server imports these once; each worker then starts in milliseconds.
        self._context.set_forkserver_preload(["scanner.work", "scanner.onnx"])
        self._idle: list[_Worker] = []

    def close(self) -> None:
        for worker in self._idle:
            with contextlib.suppress(Exception):
                worker.conn.send(None)
            worker.kill()
        self._idle = []

    def _worker(self) -> _Worker:
        return self._idle.pop() if self._idle else _Worker(self._context, self._args)

    def run(
        self, jobs: Iterable[Job], stop: Callable[[], bool] = lambda: False
    ) -> Iterator[tuple[Job, Done | Overrun]]:
        """(job, what came of it) for each job, in the order they finish. When `stop()` turns
        true, work in hand is abandoned (its workers killed) and the rest is not started."""
        queue = deque(jobs)
        busy: dict[Connection, _Worker] = {}
        try:
            while queue or busy:
                if stop():
                    return
                self._top_up(queue, busy)
                finished = list(self._collect(busy))
                # Idle workers get their next picture before the results go back: the caller
                # stores each one (database, ELA image), and a worker left waiting meanwhile
                # would idle. (Measured 2026-12-07, one worker, 54 pictures, three rounds:
                # 15.4-15.8 s against 15.6-17.0 s: a small gain, near the noise.)
                if not stop():
                    self._top_up(queue, busy)
                yield from finished
        finally:
            for worker in busy.values():  # abandoned: stopped, or the caller went away
                worker.kill()

    def _top_up(self, queue: deque[Job], busy: dict[Connection, _Worker]) -> None:
        """Start queued pictures on idle workers while the pixels in flight allow."""
        in_flight = sum(w.job.pixels for w in busy.values())
        while queue and len(busy) < self.size:
            if busy and in_flight + queue[0].pixels > self.settings.pixel_budget:
                break  # a large picture waits until it fits, or runs alone
            job = queue.popleft()
            worker = self._worker()
            try:
                worker.give(job, self.settings.image_timeout)
            except OSError:  # it died while idle: a fresh one takes the job
                worker.kill()
                worker = _Worker(self._context, self._args)
                worker.give(job, self.settings.image_timeout)
            busy[worker.conn] = worker
            in_flight += job.pixels

    def _collect(self, busy: dict[Connection, _Worker]) -> Iterator[tuple[Job, Done | Overrun]]:
        """(job, outcome) of each picture that finished, died or overran within one poll."""
        for conn in wait(list(busy), timeout=POLL_SECONDS):
            worker = busy[conn]
            try:
                message = conn.recv()
            except (EOFError, OSError):
                del busy[conn]
                yield worker.job, self._dead(worker)
                continue
            if isinstance(message, str):
                worker.stage = message
                continue
            del busy[conn]
            job, worker.job = worker.job, None
            self._idle.append(worker)
            yield job, message
        now = time.monotonic()
        cap = self.settings.worker_memory_bytes
        for conn, worker in list(busy.items()):
            if now > worker.deadline:
                kind = "timeout"
            elif cap and _resident_bytes(worker.process.pid) > cap:
                kind = "out-of-memory"
            else:
                continue
            del busy[conn]
            done = self._settle(conn, worker)
            worker.kill()  # not kept for another picture, whatever it sent: it is over a limit
            if done is not None:  # it finished before the scan read its stages: not an overrun
                yield worker.job, done
                continue
            if kind == "timeout":
                why = f"not done within {self.settings.image_timeout:g} s (SCANNER_IMAGE_TIMEOUT)"
            else:
                why = f"used more than {cap // 2**20} MB (SCANNER_WORKER_MEMORY_MB)"
            yield worker.job, Overrun(kind, f"{why} while {_doing(worker.stage)}", worker.stage)

    @staticmethod
    def _settle(conn: Connection, worker: _Worker) -> Done | None:
        """Read what an overrunning worker sent that the scan has not read yet: the stages it
        reached (the overrun is the latest one's), or its Done. A poll reads one message per
        worker, so under load a detector that allocated right after a quick one had its
        overrun blamed on the quick one, which was then disabled for the run."""
        try:
            while conn.poll():
                message = conn.recv()
                if not isinstance(message, str):
                    return message
                worker.stage = message
        except (EOFError, OSError):  # it died meanwhile: blamed on the stage it last reached
            pass
        return None

    def _dead(self, worker: _Worker) -> Overrun:
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        worker.kill()
        how = f"killed by signal {-code}" if code and code < 0 else f"exit status {code}"
        if code == -signal.SIGKILL:
            how += ", perhaps by the kernel for want of memory"
        return Overrun(
            "crashed", f"the worker process died ({how}) while {_doing(worker.stage)}", worker.stage
        )


def _doing(stage: str) -> str:
    return "decoding the image" if stage == DECODING else f"running detector {stage}"


def run_in_process(
    jobs: Iterable[Job],
    detectors: Sequence[Detector],
    settings: Settings,
    detector_settings: dict[str, dict],
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[tuple[Job, Done]]:
    """SCANNER_WORKERS=0, or no fork(): the work in this process, one picture after another,
    without time or memory limits."""
    for job in jobs:
        if stop():
            return
        yield job, work(job, detectors, settings, detector_settings)
