"""Commands that scan: `scan` once, `watch` as a daemon. Both drive the same Pipeline."""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress

from scanner.cli.common import (
    EXIT_DATABASE,
    BatchSizeOption,
    DbOption,
    DetectorsOption,
    ElaMaxSideOption,
    ElaQualityOption,
    FaceCropsOption,
    _fail,
    _pipeline,
    app,
)
from scanner.logs import LogFormat, log_outcome, setup_logging
from scanner.pipeline import ScanStats, iter_files
from scanner.store import DatabaseError
from scanner.watch import Watcher


def _print_summary(stats: ScanStats, detectors) -> None:
    rate = stats.scanned / stats.seconds if stats.seconds else 0.0
    typer.echo(f"Scanned {stats.scanned} images in {stats.seconds:.1f} s ({rate:.1f} images/s)")
    typer.echo(f"  unchanged, skipped:     {stats.unchanged}")
    typer.echo(f"  duplicates of known:    {stats.duplicates}")
    typer.echo(f"  not images, skipped:    {stats.not_images}")
    typer.echo(
        f"  errors:                 {stats.errors}" + ("  (scanner errors)" if stats.errors else "")
    )
    if stats.detector_errors:
        typer.echo(f"  detector errors:        {stats.detector_errors}  (scanner errors)")
    if detectors:
        typer.echo("Flagged fake:")
        for det in detectors:
            typer.echo(f"  {det.name}: {stats.flagged.get(det.name, 0)} of {stats.scanned}")


@app.command()
def scan(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to scan.", exists=True)],
    db: DbOption = None,
    detector: DetectorsOption = None,
    face_crops: FaceCropsOption = None,
    ela_quality: ElaQualityOption = None,
    ela_max_side: ElaMaxSideOption = None,
    batch_size: BatchSizeOption = None,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress bar. [default: on a terminal]"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Scan files and folders once; store verdicts, ELA images and errors.

    Unchanged files from earlier scans are skipped without being read.

    Example: scanner scan ~/Pictures /mnt/photos --db results.db
    """
    given = {
        "ela_quality": ela_quality,
        "ela_max_side": ela_max_side,
        "batch_size": batch_size,
        "face_crops": face_crops,
    }
    database, detectors, pipeline = _pipeline(db, detector, given)
    files = list(iter_files(paths))
    show_progress = sys.stderr.isatty() if progress is None else progress
    try:
        if show_progress:
            with Progress(transient=True) as bar:
                task = bar.add_task("scanning", total=len(files))
                stats = pipeline.scan(files, progress=lambda n: bar.advance(task, n))
        else:
            stats = pipeline.scan(files)
    except DatabaseError as exc:
        raise _fail(str(exc), EXIT_DATABASE) from None
    if as_json:
        typer.echo(json.dumps(stats.as_dict()))
    else:
        _print_summary(stats, detectors)


@app.command()
def watch(
    folders: Annotated[
        list[Path], typer.Argument(help="Folders to watch.", exists=True, file_okay=False)
    ],
    db: DbOption = None,
    detector: DetectorsOption = None,
    polling: Annotated[
        bool, typer.Option(help="Poll instead of kernel events (network shares, bind mounts).")
    ] = False,
    settle: Annotated[
        float | None,
        typer.Option(
            help="Seconds a file must be quiet before it is scanned. [default: 0.25, "
            "2 with --polling]"
        ),
    ] = None,
    reconcile: Annotated[
        float, typer.Option(help="Seconds between passes that catch events the kernel dropped.")
    ] = 300.0,
    log_format: Annotated[
        LogFormat, typer.Option(help="Log lines as text or JSON.")
    ] = LogFormat.text,
    face_crops: FaceCropsOption = None,
    ela_quality: ElaQualityOption = None,
    ela_max_side: ElaMaxSideOption = None,
    batch_size: BatchSizeOption = None,
) -> None:
    """Scan every image that arrives in FOLDERS (and below) until stopped.

    At start, and every --reconcile seconds, a catch-up pass scans whatever arrived or changed
    while the daemon was not looking. SIGTERM or SIGINT finish the batch in hand and exit 0.

    Example: scanner watch /incoming --db results.db --log-format json
    """
    setup_logging(log_format)
    given = {
        "ela_quality": ela_quality,
        "ela_max_side": ela_max_side,
        "batch_size": batch_size,
        "face_crops": face_crops,
    }
    database, detectors, pipeline = _pipeline(db, detector, given, on_file=log_outcome)
    watcher = Watcher(
        [str(f) for f in folders],
        database,
        pipeline,
        polling=polling,
        settle=settle,
        reconcile_every=reconcile,
        batch_size=pipeline.settings.batch_size,
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: watcher.stop())
    names = ", ".join(d.name for d in detectors) or "none"
    logging.getLogger("scanner.watch").info(
        "watching %s (detectors: %s; %s)",
        ", ".join(watcher.roots),
        names,
        "polling" if polling else "kernel events",
    )
    watcher.run()
