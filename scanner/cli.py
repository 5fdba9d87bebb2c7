"""The `scanner` command: one small function per command; the work is done in the library.

Exit codes: 0 done (a scan that met bad images still exits 0 and reports them); 1 the thing
asked for does not exist (`show` of an unknown image); 2 usage error; 3 database error.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from scanner import __version__
from scanner.config import Settings, db_url
from scanner.detectors import discover
from scanner.output import Format, emit
from scanner.pipeline import Pipeline, ScanStats, iter_files
from scanner.store import Database, DatabaseError, queries
from scanner.store.database import utcnow

app = typer.Typer(
    help="Find spliced, retouched, deepfaked and generated images, in bulk.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", help="SQLAlchemy URL or SQLite file. [env: SCANNER_DB; default: scanner.db]"
    ),
]
FormatOption = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
EXIT_NOT_FOUND, EXIT_DATABASE = 1, 3


def _fail(message: str, code: int) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg="red")
    return typer.Exit(code)


def _open(db: str | None) -> Database:
    try:
        return Database(db_url(db))
    except DatabaseError as exc:
        raise _fail(str(exc), EXIT_DATABASE) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"scanner {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Find spliced, retouched, deepfaked and generated images, in bulk."""


def _load_detectors(only: list[str] | None):
    plugins = discover(only)
    missing = sorted(set(only or ()) - {p.name for p in plugins})
    if missing:
        raise typer.BadParameter(
            f"no installed detector named {', '.join(missing)}", param_hint="--detector"
        )
    for plugin in plugins:
        if not plugin.loaded:
            typer.secho(
                f"warning: detector {plugin.name} skipped: {plugin.error}", err=True, fg="yellow"
            )
    detectors = [p.detector for p in plugins if p.loaded]
    if not detectors:
        typer.secho(
            "warning: no detector loaded; images get ELA images but no verdicts "
            "(see `scanner detectors`)",
            err=True,
            fg="yellow",
        )
    return detectors


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
    detector: Annotated[
        list[str] | None,
        typer.Option("--detector", "-d", help="Run only this detector (repeatable)."),
    ] = None,
    ela_quality: Annotated[
        int | None, typer.Option(help="JPEG quality of the ELA re-save. [default: 90]")
    ] = None,
    ela_max_side: Annotated[
        int | None, typer.Option(help="Longest side of the stored ELA PNG. [default: 1024]")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Images per batch and transaction. [default: 16]")
    ] = None,
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
    try:
        overrides = {
            k: v
            for k, v in {
                "ela_quality": ela_quality,
                "ela_max_side": ela_max_side,
                "batch_size": batch_size,
            }.items()
            if v is not None
        }
        settings = Settings(**overrides)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    database = _open(db)
    detectors = _load_detectors(detector)
    pipeline = Pipeline(database, detectors, settings)
    files = list(iter_files(paths))
    show_progress = sys.stderr.isatty() if progress is None else progress
    try:
        if show_progress:
            from rich.progress import Progress

            with Progress(transient=True) as bar:
                task = bar.add_task("scanning", total=len(files))
                stats = pipeline.scan(files, progress=lambda n: bar.advance(task, n))
        else:
            stats = pipeline.scan(files)
    except DatabaseError as exc:
        raise _fail(str(exc), EXIT_DATABASE) from None
    if as_json:
        summary = {
            k: getattr(stats, k)
            for k in (
                "seen",
                "scanned",
                "unchanged",
                "duplicates",
                "not_images",
                "errors",
                "detector_errors",
                "seconds",
            )
        }
        typer.echo(json.dumps(summary | {"flagged": dict(stats.flagged)}))
    else:
        _print_summary(stats, detectors)


def _parse_since(text: str) -> datetime:
    match = re.fullmatch(r"(\d+)\s*([smhdw])", text.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match[2]]
        return utcnow() - timedelta(**{unit: int(match[1])})
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: use an ISO date (2026-11-24) or an age (30m, 24h, 7d)"
        ) from None


@app.command()
def results(
    db: DbOption = None,
    label: Annotated[str | None, typer.Option(help="fake, real or not-applicable.")] = None,
    detector: Annotated[
        str | None, typer.Option("--detector", "-d", help="Only this detector's verdicts.")
    ] = None,
    min_score: Annotated[
        float | None, typer.Option(help="Only scores (P(fake)) at or above this.")
    ] = None,
    path: Annotated[
        str | None, typer.Option("--path", help="Only paths matching this glob (* and ?).")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only verdicts since an ISO time (UTC) or an age: 24h, 7d.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many rows.")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """List stored verdicts, one row per image path and detector.

    Example: scanner results --label fake --min-score 0.9 --path '*/2026/*' --format json
    """
    if label and label not in ("fake", "real", "not-applicable"):
        raise typer.BadParameter("use fake, real or not-applicable", param_hint="--label")
    where = queries.ResultFilter(
        label, detector, min_score, path, _parse_since(since) if since else None, limit
    )
    rows = queries.results(_open(db), where)
    emit(
        rows,
        fmt,
        ["path", "detector", "score", "label", "overall", "detector_version", "scanned_at"],
    )


@app.command()
def show(
    image: Annotated[
        str, typer.Argument(help="A scanned file's path, or its SHA-256 (or a prefix of 6+).")
    ],
    db: DbOption = None,
    ela: Annotated[
        Path | None,
        typer.Option(help="Where to write the ELA PNG. [default: <sha256 prefix>.ela.png]"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Print every verdict for one image and write its ELA image (and heatmaps) as PNG.

    Example: scanner show ~/Pictures/beach.jpg --ela beach-ela.png
    """
    database = _open(db)
    ref = str(Path(image).expanduser().absolute()) if Path(image).expanduser().exists() else image
    sha = queries.find_image(database, ref)
    report = queries.image_report(database, sha) if sha else None
    if report is None:
        raise _fail(f"{image} is not in the database (scan it first)", EXIT_NOT_FOUND)
    written = []
    if report["ela"]:
        target = ela or Path(f"{sha[:12]}.ela.png")
        target.write_bytes(report["ela"]["png"])
        written.append(str(target))
    for verdict in report["verdicts"]:
        if verdict["heatmap_png"]:
            target = (
                ela.parent if ela else Path(".")
            ) / f"{sha[:12]}.{verdict['detector']}.heatmap.png"
            target.write_bytes(verdict["heatmap_png"])
            written.append(str(target))
    overall = report["overall"]
    if as_json:
        verdicts = [
            {k: v for k, v in item.items() if k != "heatmap_png"} for item in report["verdicts"]
        ]
        out = {k: report[k] for k in ("sha256", "format", "width", "height", "size_bytes", "paths")}
        out |= {
            "overall": overall.label,
            "overall_score": overall.score,
            "flagged_by": list(overall.flagged_by),
            "verdicts": verdicts,
            "written": written,
        }
        typer.echo(json.dumps(out, indent=2, default=str))
        return
    size = f"{report['width']}x{report['height']}, {report['size_bytes']} bytes"
    typer.echo(f"{sha}  {report['format']} {size}")
    for p in report["paths"]:
        typer.echo(f"  {p}")
    score = "" if overall.score is None else f" (highest P(fake) {overall.score:.3f})"
    by = f", flagged by {', '.join(overall.flagged_by)}" if overall.flagged_by else ""
    typer.echo(f"Overall: {overall.label}{score}{by}")
    emit(
        report["verdicts"],
        Format.table,
        ["detector", "label", "score", "threshold", "reason", "detector_version", "seconds"],
    )
    for name in written:
        typer.echo(f"wrote {name}")


@app.command()
def detectors(fmt: FormatOption = Format.table) -> None:
    """List installed detectors: version, threshold, model hash, package, and whether they loaded.

    Example: scanner detectors --format json
    """
    rows = [p.describe() for p in discover()]
    for row in rows:
        if row["model_hash"] and fmt is Format.table:
            row["model_hash"] = row["model_hash"][:12]
    emit(rows, fmt, ["name", "status", "version", "threshold", "model_hash", "package", "error"])


@app.command()
def errors(
    db: DbOption = None,
    kind: Annotated[
        str | None, typer.Option(help="Only this kind: corrupt, truncated, decompression-bomb, ...")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many rows.")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """List files that could not be scanned, and detector failures, with the reason.

    Example: scanner errors --kind truncated --format csv
    """
    rows = queries.list_errors(_open(db), kind, limit)
    emit(rows, fmt, ["path", "detector", "kind", "message", "at"])
