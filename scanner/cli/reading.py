"""Commands that read the database back: results, show, errors, status, and detectors."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from scanner.cli.common import (
    EXIT_NOT_FOUND,
    DbOption,
    DetectorsOption,
    FormatOption,
    _fail,
    _load_detectors,
    _open,
    app,
)
from scanner.detectors import discover
from scanner.output import Format, emit
from scanner.store import queries
from scanner.store.database import utcnow


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
    for verdict in report["verdicts"]:
        if verdict["details"]:
            typer.echo(f"{verdict['detector']}:")
            for line in _detail_lines(verdict["details"]):
                typer.echo(f"  {line}")
    for name in written:
        typer.echo(f"wrote {name}")


def _detail_lines(details: dict) -> list[str]:
    """A verdict's details for people: rule findings (the metadata detector's, or any plugin's
    that uses the same shape) one per line, strongest first; other keys as compact JSON."""
    lines = []
    findings = details.get("findings")
    if isinstance(findings, list) and all(isinstance(f, dict) for f in findings):
        for f in sorted(findings, key=lambda f: -float(f.get("weight") or 0)):
            lines.append(f"{f.get('rule')} ({f.get('weight')}): {f.get('message')}")
    for key, value in details.items():
        if key != "findings" or not lines:
            text = json.dumps(value, default=str)
            lines.append(f"{key}: {text if len(text) <= 200 else text[:197] + '...'}")
    return lines


@app.command()
def detectors(fmt: FormatOption = Format.table) -> None:
    """List installed detectors: version, threshold, model hash, package, and whether they loaded.

    Example: scanner detectors --format json
    """
    rows = [p.describe() for p in discover()]
    for row in rows:
        if row["model_hash"] and fmt is Format.table:
            row["model_hash"] = row["model_hash"][:12]
    emit(
        rows,
        fmt,
        ["name", "status", "default", "version", "threshold", "model_hash", "package", "error"],
    )


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


def _ago(moment) -> str:
    if moment is None:
        return "never"
    return f"{(utcnow() - moment).total_seconds():.0f} s ago"


@app.command()
def status(db: DbOption = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Totals in the database, and the state of each watch daemon writing to it.

    Example: scanner status --db results.db
    """
    report = queries.status(_open(db))
    for watcher in report["watchers"]:
        age = (utcnow() - watcher["heartbeat_at"]).total_seconds()
        watcher["state"] = (
            "stopped" if watcher["stopped_at"] else "running" if age < 60 else "not responding"
        )
    if as_json:
        typer.echo(json.dumps(report, default=str, indent=2))
        return
    labels = ", ".join(f"{k} {v}" for k, v in sorted(report["verdicts"].items())) or "none"
    typer.echo(
        f"images {report['images']}, files {report['files']}, errors {report['errors']}, "
        f"last scan {_ago(report['last_scan_at'])}"
    )
    typer.echo(f"verdicts: {labels}")
    for w in report["watchers"]:
        typer.echo(
            f"watcher {w['id']} {w['state']}: {w['roots']} queue={w['queue_length']} "
            f"scanned={w['scanned']} errors={w['errors']} heartbeat {_ago(w['heartbeat_at'])}"
        )


@app.command()
def evaluate(
    folder: Annotated[
        Path,
        typer.Argument(
            help="A folder of class subfolders (fake/real, tampered/authentic...).",
            exists=True,
            file_okay=False,
        ),
    ],
    detector: DetectorsOption = None,
    fake: Annotated[list[str] | None, typer.Option(help="Subfolder names that hold fakes.")] = None,
    real: Annotated[list[str] | None, typer.Option(help="Subfolder names that hold reals.")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Score a labelled folder with the installed detectors and print their metrics.

    Per detector: images per class, accuracy at its threshold, ROC AUC, true-positive rate at
    5% false-positive rate, and how many images it found not applicable. The images go through
    the same pipeline as `scanner scan`, into a temporary database.

    Example: scanner evaluate ../shared/data/casia1 --fake tampered --real authentic
    """
    from scanner.evaluate import FAKE_NAMES, REAL_NAMES, labelled_files
    from scanner.evaluate import evaluate as run_evaluation

    items = labelled_files(str(folder), fake or FAKE_NAMES, real or REAL_NAMES)
    if not items or len({y for _, y in items}) < 2:
        raise typer.BadParameter(f"{folder} needs a fake and a real subfolder with images")
    detectors = _load_detectors(detector)
    rows = [{"detector": name} | vars(m) for name, m in run_evaluation(items, detectors).items()]
    emit(
        rows,
        fmt,
        [
            "detector",
            "n_fake",
            "n_real",
            "accuracy",
            "roc_auc",
            "tpr_at_5_fpr",
            "not_applicable_fake",
            "not_applicable_real",
        ],
    )
