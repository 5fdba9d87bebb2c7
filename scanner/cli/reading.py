"""Commands that read the database back: results, show, errors, and detectors."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated

import typer

from scanner.cli.common import (
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    DbOption,
    FormatOption,
    InUseOption,
    LimitOption,
    _fail,
    _in_use,
    _open,
    app,
)
from scanner.detectors import LABELS, discover
from scanner.output import Format, display_path, dumps, emit, printable, score_and_threshold
from scanner.store import queries
from scanner.store.database import utcnow
from scanner.verdict import OVERALL_LABELS


def _parse_since(text: str) -> datetime:
    match = re.fullmatch(r"(\d+)\s*([smhdw])", text.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match[2]]
        return utcnow() - timedelta(**{unit: int(match[1])})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: use an ISO time (2026-11-24, 2026-11-24T08:00:00Z) or an age (30m, 7d)",
            param_hint="--since",
        ) from None
    if moment.tzinfo is not None:  # the database holds naive UTC
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def _choice(value: str | None, allowed: tuple[str, ...], option: str) -> str | None:
    """A label option, case-insensitive."""
    if value is None:
        return None
    if value.lower() not in allowed:
        raise typer.BadParameter(f"use {', '.join(allowed)}", param_hint=option)
    return value.lower()


@app.command()
def results(
    db: DbOption = None,
    overall: Annotated[
        str | None,
        typer.Option(
            metavar="WORD",
            help="Only images whose overall verdict is this: fake, no-sign, unknown or error.",
            show_default=False,
        ),
    ] = None,
    detector: InUseOption = None,
    per_detector: Annotated[
        bool,
        typer.Option("--per-detector", help="One row per image and detector instead."),
    ] = False,
    label: Annotated[
        str | None,
        typer.Option(
            metavar="WORD",
            help="Only verdicts with this label: fake, real or not-applicable (one row per "
            "detector).",
            show_default=False,
        ),
    ] = None,
    min_score: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            metavar="0-1",
            help="Only scores (P(fake)) at or above this.",
            show_default=False,
        ),
    ] = None,
    path: Annotated[
        str | None,
        typer.Option(
            "--path",
            metavar="GLOB",
            help="Only paths matching this glob (* and ?).",
            show_default=False,
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            metavar="WHEN",
            help="Only those scanned since an ISO time (UTC unless it says) or an age: 24h, 7d.",
            show_default=False,
        ),
    ] = None,
    limit: LimitOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """List scanned files: path, overall verdict, highest score, who flagged it, errors.

    One row per file, with the detectors that flagged it and its SHA-256.

    The overall verdict counts the detectors in use: those on by default, or the ones named
    with -d. fake: one of them flagged the image; no-sign: they judged it and none did (not
    a proof that it is genuine); unknown: none could judge it; error: the file could not be
    scanned (the errors column says why).

    Example: scanner results --overall fake --min-score 0.9 --path '*/2026/*' --format json
    """
    overall = _choice(overall, OVERALL_LABELS, "--overall")
    label = _choice(label, LABELS, "--label")
    where = queries.ResultFilter(
        label, overall, min_score, path, _parse_since(since) if since else None, limit
    )
    database = _open(db)
    in_use = _in_use(database, detector)
    if per_detector or label:
        rows = queries.verdicts(database, where, detectors=in_use, in_use=in_use)
        columns = ["path", "detector", "label", "score", "threshold", "reason", "overall"]
        if fmt is Format.table:
            rows = [score_and_threshold(row) for row in rows]
        emit(rows, fmt, columns)
        return
    rows = queries.images(database, where, in_use)
    if fmt is Format.table:
        for row in rows:
            row["sha256"] = (row["sha256"] or "")[:12]
            # The kinds only: `scanner errors` or `show` give the messages.
            row["errors"] = [
                " ".join(filter(None, (e["detector"], e["kind"]))) for e in row["errors"]
            ]
    emit(rows, fmt, ["path", "overall", "score", "flagged_by", "errors", "sha256"])


def _writable_file(target: Path, option: str) -> Path:
    target = target.expanduser()
    if target.is_dir():
        raise typer.BadParameter(f"{target} is a folder; give a file name", param_hint=option)
    if not target.parent.is_dir():
        raise typer.BadParameter(f"folder {target.parent} does not exist", param_hint=option)
    return target


def _write(target: Path, data: bytes) -> None:
    try:
        target.write_bytes(data)
    except OSError as exc:
        raise _fail(f"cannot write {target}: {exc.strerror or exc}", EXIT_USAGE) from None


@app.command()
def show(
    image: Annotated[
        str,
        typer.Argument(
            metavar="IMAGE", help="A scanned file's path, or its SHA-256 (or a prefix of 6+)."
        ),
    ],
    db: DbOption = None,
    detector: InUseOption = None,
    all_verdicts: Annotated[
        bool,
        typer.Option("--all", help="Also list stored verdicts of detectors not in use."),
    ] = False,
    ela: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Write the ELA image here (PNG).", show_default=False),
    ] = None,
    heatmaps: Annotated[
        Path | None,
        typer.Option(
            metavar="FOLDER",
            help="Write each detector's heatmap into this folder (PNG).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="FILE",
            help="Write one picture here (PNG): photo | ELA | each heatmap overlay, verdicts "
            "under them.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Print every verdict for one image; write its ELA image, heatmaps or summary on request.

    Example: scanner show ~/Pictures/beach.jpg --out beach.png --heatmaps /tmp/maps
    """
    if ela is not None:
        ela = _writable_file(ela, "--ela")
    if out is not None:
        out = _writable_file(out, "--out")
    if heatmaps is not None and not heatmaps.expanduser().is_dir():
        raise typer.BadParameter(f"{heatmaps} is not a folder", param_hint="--heatmaps")
    database = _open(db)
    in_use = _in_use(database, detector)
    ref = str(Path(image).expanduser().absolute()) if Path(image).expanduser().exists() else image
    sha = queries.find_image(database, ref)
    report = queries.image_report(database, sha, in_use) if sha else None
    if report is None:
        errors = queries.file_errors(database, ref)
        if errors:  # scanned, but it could not be read: say why rather than "scan it first"
            reasons = "; ".join(f"{e['kind']}: {e['message']}" for e in errors)
            raise _fail(f"{image} could not be scanned ({reasons})", EXIT_NOT_FOUND)
        raise _fail(f"{image} is not in the database (scan it first)", EXIT_NOT_FOUND)
    shown = [v for v in report["verdicts"] if all_verdicts or v["in_use"]]
    hidden = len(report["verdicts"]) - len(shown)
    written = []
    if ela is not None:
        if not report["ela"]:
            raise _fail("no ELA image was stored for it (scanned with --no-ela)", EXIT_NOT_FOUND)
        _write(ela, report["ela"]["png"])
        written.append(str(ela))
    if heatmaps is not None:
        for verdict in shown:
            if verdict["heatmap_png"]:
                target = heatmaps.expanduser() / f"{sha[:12]}.{verdict['detector']}.heatmap.png"
                _write(target, verdict["heatmap_png"])
                written.append(str(target))
    if out is not None:
        from scanner.report.pictures import to_bytes
        from scanner.report.sheet import sheet_of

        _write(out, to_bytes(sheet_of(report, shown), "PNG"))
        written.append(str(out))
    overall = report["overall"]
    if as_json:
        verdicts = [{k: v for k, v in item.items() if k != "heatmap_png"} for item in shown]
        keys = ("sha256", "format", "width", "height", "size_bytes", "first_seen_at", "paths")
        out = {k: report[k] for k in keys}
        out |= {
            "overall": overall.label,
            "overall_score": overall.score,
            "flagged_by": list(overall.flagged_by),
            "checked_by": list(overall.checked_by),
            "verdicts": verdicts,
            "written": written,
        }
        typer.echo(dumps(out, indent=2))
        return
    size = f"{report['width']}x{report['height']}, {report['size_bytes']} bytes"
    typer.echo(f"{sha}  {report['format']} {size}")
    for p in report["paths"]:
        typer.echo(f"  {display_path(p)}")
    score = "" if overall.score is None else f" (highest P(fake) {overall.score:.3f})"
    by = f", flagged by {', '.join(overall.flagged_by)}" if overall.flagged_by else ""
    checked = ", ".join(overall.checked_by) or "no detector could judge it"
    typer.echo(f"Overall: {overall.label}{score}{by}; checked by: {checked}")
    columns = ["detector", "label", "score", "threshold", "reason", "detector_version", "seconds"]
    table = [score_and_threshold(row) for row in shown]
    emit(table, Format.table, [*columns, "in_use"] if all_verdicts else columns, shorten=None)
    if hidden:
        typer.echo(f"({hidden} stored verdicts of detectors not in use: --all lists them)")
    for verdict in shown:
        if verdict["details"]:
            typer.echo(f"{verdict['detector']}:")
            for line in _detail_lines(verdict["details"]):
                typer.echo(f"  {printable(line)}")
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
        shorten=None,
    )


@app.command()
def errors(
    db: DbOption = None,
    kind: Annotated[
        str | None,
        typer.Option(
            metavar="KIND",
            help="Only this kind: corrupt, truncated, decompression-bomb, ...",
            show_default=False,
        ),
    ] = None,
    limit: LimitOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """List files that could not be scanned, and detector failures, with the reason.

    Example: scanner errors --kind truncated --format csv
    """
    rows = queries.list_errors(_open(db), kind, limit)
    emit(rows, fmt, ["path", "detector", "kind", "message", "at"])
