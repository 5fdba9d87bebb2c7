"""Commands that scan: `scan` once, `watch` as a daemon. Both drive the same Pipeline."""

from __future__ import annotations

import logging
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import MofNCompleteColumn, Progress, ProgressColumn
from rich.text import Text

from scanner.cli.common import (
    EXIT_DATABASE,
    BatchSizeOption,
    DbOption,
    DetectorsOption,
    ElaGreyOption,
    ElaMaxSideOption,
    ElaQualityOption,
    FaceCropsOption,
    StoreElaOption,
    _fail,
    _pipeline,
    app,
    set_reporter,
)
from scanner.logs import WORDS, LogFormat, log_outcome, setup_logging
from scanner.outcomes import FileOutcome, ScanStats
from scanner.output import dumps, printable
from scanner.store import DatabaseError
from scanner.watch import Watcher


def _print_summary(stats: ScanStats, detectors) -> None:
    rate = stats.scanned / stats.seconds if stats.seconds else 0.0
    typer.echo(f"Scanned {stats.scanned} images in {stats.seconds:.1f} s ({rate:.1f} images/s)")
    typer.echo(f"  unchanged, skipped:     {stats.unchanged}")
    typer.echo(f"  duplicates of known:    {stats.duplicates}")
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(stats.skipped.items()))
    typer.echo(
        f"  not images, skipped:    {stats.not_images}"
        + (f"  ({kinds}; --verbose names them)" if kinds else "")
    )
    typer.echo(
        f"  errors:                 {stats.errors}" + ("  (scanner errors)" if stats.errors else "")
    )
    if stats.detector_errors:
        typer.echo(f"  detector errors:        {stats.detector_errors}  (scanner errors)")
    if detectors:
        typer.echo("Flagged fake:")
        for det in detectors:
            typer.echo(f"  {det.name}: {stats.flagged.get(det.name, 0)} of {stats.scanned}")


def _say_outcome(item: FileOutcome) -> None:
    """--verbose: one line on stderr per file that was not simply scanned."""
    if item.outcome != "scanned":
        word = WORDS.get(item.outcome, item.outcome)
        detail = f" ({printable(item.detail)})" if item.detail else ""
        typer.echo(f"{word}: {printable(item.path)}{detail}", err=True)


class Engine(str, Enum):
    plain = "plain"
    ray = "ray"


class RayDecode(str, Enum):
    actors = "actors"
    tasks = "tasks"


class FilesPerSecond(ProgressColumn):
    """Files per second over the scan so far (rich's own speed is a short moving window)."""

    def render(self, task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        if not elapsed or not task.completed:
            return Text("")
        return Text(f"{task.completed / elapsed:.1f} files/s")


@app.command()
def scan(
    paths: Annotated[
        list[Path],
        typer.Argument(metavar="PATH...", help="Files and folders to scan.", exists=True),
    ],
    db: DbOption = None,
    detector: DetectorsOption = None,
    rescan: Annotated[
        bool,
        typer.Option(
            "--rescan", help="Read every file and run every detector again, changed or not."
        ),
    ] = False,
    follow_links: Annotated[
        bool,
        typer.Option(
            "--follow-links",
            help="Walk folders behind symbolic links (each folder once). Without it they are "
            "counted as skipped.",
        ),
    ] = False,
    face_crops: FaceCropsOption = None,
    ela_quality: ElaQualityOption = None,
    ela_max_side: ElaMaxSideOption = None,
    store_ela: StoreElaOption = None,
    ela_grey: ElaGreyOption = None,
    batch_size: BatchSizeOption = None,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Progress bar. (default: on a terminal)",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Name every file not scanned (skipped, unchanged, duplicate, error) on stderr.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    engine: Annotated[
        Engine,
        typer.Option(
            help="Who works on the pictures: the scanner's own worker processes (plain), or "
            "Ray Data (ray; pip install 'scanner[ray]'), locally or on a cluster.",
        ),
    ] = Engine.plain,
    ray_address: Annotated[
        str | None,
        typer.Option(help="--engine ray: the cluster to join (default: start a local one)."),
    ] = None,
    ray_cpus: Annotated[
        int | None,
        typer.Option(min=1, help="--engine ray: CPUs to use (default: all the cluster has)."),
    ] = None,
    ray_decode: Annotated[
        RayDecode,
        typer.Option(
            help="--engine ray: where pictures are decoded: in the detector actors (actors: "
            "only the file crosses the object store) or in Ray tasks of their own (tasks: "
            "decoding scales apart from the detectors, but each decoded picture crosses the "
            "object store; slower and 3x the memory on one machine, see the README).",
        ),
    ] = RayDecode.actors,
) -> None:
    """Scan files and folders once; store verdicts, ELA images and errors.

    Unchanged files from earlier scans are skipped without being read. A detector whose version
    or settings (--face-crops, --ela-quality, its options) changed since a file's verdict was
    made runs again on it.

    Example: scanner scan ~/Pictures /mnt/photos --db results.db

    Example: scanner scan /mnt/archive --engine ray --ray-address ray://head:10001 --db $PG_URL
    """
    given = {
        "ela_quality": ela_quality,
        "ela_max_side": ela_max_side,
        "batch_size": batch_size,
        "face_crops": face_crops,
        "store_ela": store_ela,
        "ela_grey": ela_grey,
    }
    ray = None
    if engine is Engine.ray:
        ray = {"address": ray_address, "cpus": ray_cpus, "decode": ray_decode.value}
        if batch_size is None:  # each batch is one Ray dataset, with its own actor pool
            from scanner.ray_engine import RAY_BATCH

            given["batch_size"] = RAY_BATCH
    database, detectors, pipeline = _pipeline(
        db, detector, given, on_file=_say_outcome if verbose else None, rescan=rescan, ray=ray
    )
    files = pipeline.list_files(paths, follow_links=follow_links)
    show_progress = sys.stderr.isatty() if progress is None else progress
    # SIGTERM: store what is done and stop within seconds (the rest is scanned next time).
    signal.signal(signal.SIGTERM, lambda *_: pipeline.stop())
    try:
        if show_progress:
            columns = (*Progress.get_default_columns(), MofNCompleteColumn(), FilesPerSecond())
            with Progress(*columns, transient=True) as bar:
                task = bar.add_task("scanning", total=len(files))
                stats = pipeline.scan(files, progress=lambda n: bar.advance(task, n))
        else:
            stats = pipeline.scan(files)
    except DatabaseError as exc:
        raise _fail(str(exc), EXIT_DATABASE) from None
    finally:
        pipeline.close()
    if as_json:
        typer.echo(dumps(stats.as_dict() | {"disabled": pipeline.disabled}))
    else:
        _print_summary(stats, detectors)
        for name, why in pipeline.disabled.items():
            typer.echo(f"  {name} was disabled during the scan: {printable(why)}")
    if pipeline.stopping:
        raise typer.Exit(143)


@app.command()
def watch(
    folders: Annotated[
        list[Path],
        typer.Argument(metavar="FOLDER...", help="Folders to watch.", exists=True, file_okay=False),
    ],
    db: DbOption = None,
    detector: DetectorsOption = None,
    polling: Annotated[
        bool, typer.Option(help="Poll instead of kernel events (network shares, bind mounts).")
    ] = False,
    settle: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="Seconds a file must be quiet before it is scanned. (default: 0.25, "
            "2 with --polling)",
            show_default=False,
        ),
    ] = None,
    reconcile: Annotated[
        float,
        typer.Option(
            min=1.0,
            metavar="SECONDS",
            help="Seconds between passes that catch events the kernel dropped.",
        ),
    ] = 300.0,
    log_format: Annotated[
        LogFormat, typer.Option(help="Log lines as text or JSON.")
    ] = LogFormat.text,
    face_crops: FaceCropsOption = None,
    ela_quality: ElaQualityOption = None,
    ela_max_side: ElaMaxSideOption = None,
    store_ela: StoreElaOption = None,
    ela_grey: ElaGreyOption = None,
    batch_size: BatchSizeOption = None,
) -> None:
    """Scan every image that arrives in FOLDERS (and below) until stopped.

    At start, and every --reconcile seconds, a catch-up pass scans whatever arrived or changed
    while the daemon was not looking. SIGTERM or SIGINT store what is done, abandon the image
    work in hand (scanned at the next start) and exit 0 within seconds.

    Example: scanner watch /incoming --db results.db --log-format json
    """
    setup_logging(log_format)
    log = logging.getLogger("scanner.watch")
    given = {
        "ela_quality": ela_quality,
        "ela_max_side": ela_max_side,
        "batch_size": batch_size,
        "face_crops": face_crops,
        "store_ela": store_ela,
        "ela_grey": ela_grey,
    }
    # Every line the daemon writes goes through its log format, its own errors included.
    set_reporter(lambda level, message: getattr(log, level)(message))
    database, detectors, pipeline = _pipeline(
        db, detector, given, on_file=log_outcome, say=lambda level, message: log.warning(message)
    )
    watcher = Watcher(
        [str(f) for f in folders],
        database,
        pipeline,
        polling=polling,
        settle=settle,
        reconcile_every=reconcile,
        batch_size=pipeline.settings.batch_size,
    )

    def stop(*_) -> None:
        watcher.stop()
        pipeline.stop()  # abandon the image work in hand: stopped within seconds

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    names = ", ".join(d.name for d in detectors) or "none"
    logging.getLogger("scanner.watch").info(
        "watching %s (detectors: %s; %s)",
        ", ".join(watcher.roots),
        names,
        "polling" if polling else "kernel events",
    )
    try:
        watcher.run()
    finally:
        pipeline.close()
