"""`scanner scan --engine ray`: the same Pipeline, with each batch's files read and its
pictures worked on by Ray instead of the scanner's own worker processes.

Each batch of paths goes through Ray twice. First, Ray tasks read and hash the files
(`read_files`: the Pipeline's own scanner.files.read_file, sending back the stat, the
SHA-256 and the size from the header, never the bytes). Then the scanning process (Ray's
driver) does what needs the database, with Pipeline's own code, unchanged: the unchanged-file
check, duplicates, claims, and storing in batches. Last, each batch becomes a Ray Data
dataset mapped by a pool of `Judge` actors, each holding the detectors loaded once (one
onnxruntime session per model per actor, its threads set to the actor's CPUs). Where the
pictures are decoded is the user's choice (`--ray-decode`):
- `actors` (the default): each actor reads the picture again on its node, checks that its
  SHA-256 is still the one the driver decided on, and runs scanner.work.work (decode once,
  ELA, views, every detector) in a worker process of its own (scanner.workers.WorkerPool),
  which keeps the plain engine's time and memory limits per picture. Only file bytes travel.
- `tasks`: `prepare_pictures` Ray Data tasks do the reading, the check and
  scanner.work.prepare (decode, image row and ELA record, the views the detectors need: faces,
  ELA), and the actors run only the detectors on the prepared picture (in their worker
  process, with the limits). Decoding then scales apart from the detectors (CPU nodes for
  decoding, others for the models), but each decoded picture crosses the object store (36 MB
  for 12 megapixels, a network copy between nodes): on one 2-core machine it was about 0.7x
  as fast and held about 3x the memory (README). Decoding in tasks is bounded by Pillow's
  decompression-bomb limit (about 179 megapixels), not by the per-picture time limit.
Before all this, the folders are listed by Ray tasks too (`list_folders`: the plain walk's
scanner.files.list_folder), each folder's subfolders sent out as soon as it is listed.

A picture that cannot be decoded, or a detector that fails on it, is an error row exactly as
in the plain engine (work() decides); anything else that escapes work() is caught in the
actor and becomes that picture's error, so one bad picture never fails the job.

Needs the `ray` extra: pip install 'scanner[ray]'.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np

from scanner.config import Settings
from scanner.detectors import Detector, discover
from scanner.files import Unlisted, file_error, list_folder, read_file
from scanner.pipeline import Pipeline
from scanner.store.database import ErrorRecord
from scanner.work import DECODING, Done, Job, Prepared, prepare, work
from scanner.workers import WorkerPool, isolation_available, unsendable

# Pictures per Ray dataset: each dataset starts its own actor pool, whose detectors load
# once per dataset, so a batch is larger than the plain engine's.
RAY_BATCH = 256


# Paths per reading task: enough to amortise a task's start, few enough to spread a batch.
READ_BATCH = 16
# Memory a decoding task asks Ray for: a 12-megapixel picture decoded, its ELA and the copies
# on their way out (Ray schedules by it; it is not a limit).
DECODING_MEMORY = 512 * 2**20
# Folders per listing task: a tree's folders are listed in parallel, level after level.
LIST_BATCH = 8


class RayUnavailable(RuntimeError):
    pass


def ray_failure(exc: Exception) -> str:
    """The error message for a failure of Ray itself (a lost actor, task or node)."""
    return f"Ray: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"


def list_folders(folders: list[str], follow_links: bool) -> list:
    """A Ray task: list_folder on each folder."""
    return [list_folder(folder, follow_links) for folder in folders]


def read_files(paths: list[str], max_file_bytes: int, checked_with) -> list:
    """A Ray task: read_file on each path, without keeping the bytes."""
    return [read_file(path, max_file_bytes, checked_with, keep_bytes=False) for path in paths]


def read_again(job: Job) -> Job | Done:
    """The job with its picture's bytes, read on this node; a failure if the file cannot be
    read or is no longer the picture the scanning process hashed."""
    try:
        with open(job.path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        return Done(failure=("unreadable", exc.strerror or str(exc)))
    if hashlib.sha256(data).hexdigest() != job.sha256:
        return Done(failure=("unreadable", "the file changed while it was being scanned"))
    return replace(job, data=data)


def prepare_pictures(batch: dict[str, np.ndarray], payload: bytes) -> dict[str, np.ndarray]:
    """A Ray Data task: each job's picture read on this node, decoded, described and given
    the views its detectors need (scanner.work.prepare), ready for the detector actors; a
    picture that cannot be read or decoded goes on as its failure."""
    settings, needs = pickle.loads(payload)
    out = []
    for raw in batch["job"]:
        job = pickle.loads(raw)
        try:
            if not job.data:
                job = read_again(job)
            prepared = job if isinstance(job, Done) else prepare(job, settings, needs)
        except BaseException as exc:  # noqa: BLE001 - this picture's failure, not the job's
            prepared = Done(failure=("crashed", f"{type(exc).__name__}: {exc}"))
        out.append(pickle.dumps(prepared))
    return {"index": batch["index"], "prepared": np.array(out, dtype=object)}


class Judge:
    """A Ray Data actor: the detectors, loaded once by name (as installed on its node, the
    way the scanning process loads them), run on one picture at a time: decoded here, or
    prepared by a `prepare_pictures` task."""

    def __init__(self, payload: bytes, threads: int):
        from scanner.workers import share_threads

        # One actor per CPU: its own share of them, for onnxruntime, OpenCV and BLAS.
        os.environ["SCANNER_ONNX_THREADS"] = str(threads)
        share_threads(threads)
        names, self.settings, self.detector_settings = pickle.loads(payload)
        plugins = {p.name: p for p in discover(names)}
        self.detectors = [plugins[n].detector for n in names if n in plugins and plugins[n].loaded]
        self.unloaded = {
            n: plugins[n].error if n in plugins else "not installed on this Ray node"
            for n in names
            if n not in plugins or not plugins[n].loaded
        }
        # The plain engine's limits per picture (SCANNER_IMAGE_TIMEOUT, SCANNER_WORKER_MEMORY_MB):
        # the detectors run in one worker process of the actor's own, which is killed when a
        # picture overruns them.
        self.pool = None
        self.disabled: set[str] = set()
        if self.settings.workers and isolation_available():
            self.unloaded |= unsendable(self.detectors)
            self.detectors = [d for d in self.detectors if d.name not in self.unloaded]
            one = replace(self.settings, workers=1)
            self.pool = WorkerPool(self.detectors, one, self.detector_settings, threads)

    def judge(self, item: Job | Prepared | Done) -> Done:
        """The detectors' verdicts on one picture: a Job (read again here if it comes without
        its bytes, and decoded here), a Prepared (decoded by a task), or a Done (it could not be
        read or decoded)."""
        if isinstance(item, Job) and not item.data:
            item = read_again(item)
        if isinstance(item, Done):
            return item
        try:
            if self.pool is None:
                done = work(item, self.detectors, self.settings, self.detector_settings)
            else:
                done = self.isolated(item)
        except BaseException as exc:  # noqa: BLE001 - this picture's failure, not the job's
            return Done(failure=("crashed", f"{type(exc).__name__}: {exc}"))
        if not done.failure:
            done.errors += [
                ErrorRecord(item.path, "detector-error", f"not loaded: {why}", name, item.sha256)
                for name, why in self.unloaded.items()
                if name in item.detectors
            ]
        return done

    def isolated(self, item: Job | Prepared) -> Done:
        """work() in the actor's worker process. A detector that overruns the limits gets an
        error row and is left out for the rest of this actor's life, and the picture is worked
        on again without it, as Pipeline._work does; an overrun while decoding fails the
        picture."""
        blamed: list[ErrorRecord] = []
        while True:
            running = tuple(n for n in item.detectors if n not in self.disabled)
            if isinstance(item, Prepared):
                item = replace(item, job=replace(item.job, detectors=running))
            else:
                item = replace(item, detectors=running)
            ((_, outcome),) = list(self.pool.run([item]))
            if isinstance(outcome, Done):
                outcome.errors += blamed
                return outcome
            if outcome.stage == DECODING:
                return Done(failure=(outcome.kind, outcome.message))
            self.disabled.add(outcome.stage)
            blamed.append(outcome.error_row(item))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        column = "prepared" if "prepared" in batch else "job"
        done = [pickle.dumps(self.judge(pickle.loads(raw))) for raw in batch[column]]
        return {"index": batch["index"], "done": np.array(done, dtype=object)}


def start(address: str | None, cpus: int | None) -> int:
    """Connect to the Ray cluster at `address` (None: start a local one with `cpus` CPUs, all
    of this machine's when None); the number of CPUs the scan may use."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise RayUnavailable("--engine ray needs Ray Data: pip install 'scanner[ray]'") from None
    # Ray's C++ core logs warnings meant for Ray's developers straight to stderr (for
    # example that an actor's constructor arguments sit in the object store, which Ray Data
    # does itself): the scan's stderr is for the user.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    if not ray.is_initialized():
        ray.init(
            address=address,
            num_cpus=cpus if address is None else None,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    # Ray Data reports each dataset it runs on stderr; the scan has its own progress and
    # summary.
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    if hasattr(context, "print_on_execution_start"):
        context.print_on_execution_start = False
    available = int(ray.cluster_resources().get("CPU", 1))
    return max(1, min(cpus, available) if cpus else available)


class RayPipeline(Pipeline):
    """A Pipeline whose pictures are worked on by a Ray Data actor pool."""

    def __init__(
        self,
        db,
        detectors: Sequence[Detector],
        settings: Settings,
        *args,
        address: str | None = None,
        cpus: int | None = None,
        decode: str = "actors",
        **kwargs,
    ):
        super().__init__(db, detectors, settings, *args, **kwargs)
        if decode not in ("actors", "tasks"):
            raise ValueError(f"decode must be 'actors' or 'tasks', not {decode!r}")
        self.decode = decode
        self.actors = start(address, cpus)

    def list_files(self, roots, follow_links: bool = False) -> list[str]:
        """iter_files' paths, each folder listed by a Ray task (files.list_folder, the plain
        walk's own code): a folder's subfolders go out to tasks as soon as it is listed. Which
        folders were walked is kept here, so a folder reached again through a link is walked
        once, as in the plain walk; the order of the paths is not the plain walk's."""
        import ray

        lister = ray.remote(num_cpus=1)(list_folders)
        pending: dict = {}  # Ray future -> the folders it lists
        paths: list[str] = []
        walked: set[tuple[int, int]] = set()

        def send(folders: list[str]) -> None:
            for start in range(0, len(folders), LIST_BATCH):
                chunk = folders[start : start + LIST_BATCH]
                pending[lister.remote(chunk, follow_links)] = chunk

        for root in roots:
            root = os.path.abspath(root)
            if os.path.isdir(root):
                send([root])
            else:
                paths.append(root)
        while pending:
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            folders = pending.pop(ready)
            try:
                listed = ray.get(ready)
            except Exception as exc:  # noqa: BLE001 - Ray's own failure (a lost node)
                why = ray_failure(exc)
                paths += [Unlisted(folder, why) for folder in folders]
                continue
            for key, files, subfolders, unlisted in listed:
                paths += unlisted
                if key is None or key in walked:
                    continue
                walked.add(key)
                paths += files
                send(subfolders)
        return paths

    def _load(self, paths, states, known):
        """Pipeline._load with the reading done in Ray tasks (plain tasks: a Ray Data
        dataset per batch would add a second or two of planning to every batch); the
        unchanged-file check then applied here to the stat each task saw (it needs the
        database)."""
        import ray

        outcomes: list = [None] * len(paths)
        listed = []
        for index, path in enumerate(paths):
            if isinstance(path, Unlisted):  # nothing to read: its error needs no task
                outcomes[index] = self._read(path, None, known)
            else:
                listed.append(index)
        reader = ray.remote(num_cpus=1)(read_files)
        chunks = [listed[i : i + READ_BATCH] for i in range(0, len(listed), READ_BATCH)]
        futures = [
            reader.remote(
                [str(paths[i]) for i in chunk], self.settings.max_file_bytes, self._checked_with
            )
            for chunk in chunks
        ]
        for chunk, future in zip(chunks, futures, strict=True):
            try:
                read = ray.get(future)
            except Exception as exc:  # noqa: BLE001 - Ray's own failure (a lost node)
                message = ray_failure(exc)
                for index in chunk:
                    outcomes[index] = file_error(str(paths[index]), "unreadable", message)
                continue
            for index, outcome in zip(chunk, read, strict=True):
                loaded = isinstance(outcome, tuple) and len(outcome) == 5
                if loaded and self._unchanged(outcome[1], states.get(paths[index]), known):
                    outcome = None  # as Pipeline._read decides before reading
                outcomes[index] = outcome
        return outcomes

    def _work(self, jobs: list[Job]) -> Iterator[tuple[Job, Done]]:
        if not jobs:
            return
        results = self.plan(jobs)
        returned: set[int] = set()
        try:
            for row in results.iter_rows():
                if self.stopping:
                    return
                index = int(row["index"])
                returned.add(index)
                yield jobs[index], pickle.loads(row["done"])
        except Exception as exc:  # noqa: BLE001 - Ray's own failure (a lost actor or node)
            message = ray_failure(exc)
            for index, job in enumerate(jobs):
                if index not in returned:
                    yield job, Done(failure=("crashed", message))

    def plan(self, jobs: list[Job]):
        """The Ray dataset that judges `jobs`: rows of (index, pickled Done)."""
        import ray.data

        # Names, not the loaded detectors: the actors' constructor arguments stay small (a
        # model's bytes would go through the object store to every actor).
        running = [d.name for d in self.detectors if d.name not in self.disabled]
        payload = pickle.dumps((running, self.settings, self._settings))
        rows = [{"index": i, "job": pickle.dumps(job)} for i, job in enumerate(jobs)]
        dataset = ray.data.from_items(rows, override_num_blocks=min(len(rows), 4 * self.actors))
        if self.decode == "tasks":
            needs = frozenset().union(*(d.needs for d in self.detectors if d.name in running))
            # Half a CPU each for the decoding tasks and the detector actors: actors hold their
            # CPU for the whole dataset, and with a whole CPU each no task could run beside
            # them. The tasks also ask for the memory a decoded picture takes: besides being
            # true, resources unlike the actors' keep Ray Data from fusing the two steps into
            # one actor (it fuses a task step into the actor step after it when their remote
            # arguments match), which would decode in the actors after all.
            dataset = dataset.map_batches(
                prepare_pictures,
                fn_args=(pickle.dumps((self.settings, needs)),),
                batch_size=1,
                num_cpus=0.5,
                memory=DECODING_MEMORY,
                batch_format="numpy",
            )
        return dataset.map_batches(
            Judge,
            fn_constructor_args=(payload, 1),
            batch_size=1,
            concurrency=min(self.actors, len(jobs)),
            num_cpus=0.5 if self.decode == "tasks" else 1,
            batch_format="numpy",
        )
