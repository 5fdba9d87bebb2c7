"""`scanner evaluate`: score a labelled folder through the scan's own pipeline, print metrics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress

from scanner.cli.common import DetectorsOption, FormatOption, _load_detectors, app
from scanner.output import Format, emit


@app.command()
def evaluate(
    folder: Annotated[
        Path,
        typer.Argument(
            metavar="FOLDER",
            help="A folder of class subfolders (fake/real, tampered/authentic...).",
            exists=True,
            file_okay=False,
        ),
    ],
    detector: DetectorsOption = None,
    fake: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME", help="Subfolder names that hold fakes.", show_default=False),
    ] = None,
    real: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME", help="Subfolder names that hold reals.", show_default=False),
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Score a labelled folder with the installed detectors and print their metrics.

    Per detector: its threshold; images per class it judged; at the threshold, the accuracy,
    the share of fakes flagged (tpr) and of reals flagged (fpr), each with its 95% confidence
    interval (Wilson's: none of 50 reals flagged is an fpr of 0-7%); ROC AUC and its 95%
    confidence interval (roc_auc_low, roc_auc_high, DeLong's: on a few dozen images it is
    wide); the true-positive rate at 5% false-positive rate; and how many images it found not
    applicable. A metric that needs a class it judged no image of is left empty (null in
    JSON). The images go through the same pipeline as `scanner scan`, into a temporary
    database.

    Example: scanner evaluate ../shared/data/casia1 --fake tampered --real authentic
    """
    from scanner.evaluate import FAKE_NAMES, REAL_NAMES, labelled_files
    from scanner.evaluate import evaluate as run_evaluation

    items = labelled_files(str(folder), fake or FAKE_NAMES, real or REAL_NAMES)
    if not items or len({y for _, y in items}) < 2:
        raise typer.BadParameter(f"{folder} needs a fake and a real subfolder with images")
    detectors = _load_detectors(detector)
    shown = Console(stderr=True).is_terminal
    with Progress(transient=True, console=Console(stderr=True), disable=not shown) as bar:
        task = bar.add_task("scoring", total=len(items))
        metrics = run_evaluation(items, detectors, progress=lambda n: bar.advance(task, n))
    thresholds = {d.name: d.threshold for d in detectors}
    rows = [
        {"detector": name, "threshold": thresholds[name]} | vars(m) for name, m in metrics.items()
    ]
    first = ["detector", "threshold", "n_fake", "n_real", "accuracy"]
    last = ["tpr_at_5_fpr", "not_applicable_fake", "not_applicable_real"]
    if fmt is Format.table:  # each figure and its interval in one cell: 13 columns, not 19
        rows = [row | _with_intervals(row) for row in rows]
        figures = [f"{name} (95%)" for name in INTERVALLED]
    else:
        figures = [f"{name}{end}" for name in INTERVALLED for end in ("", "_low", "_high")]
    emit(rows, fmt, first + figures + last, shorten=None)


INTERVALLED = ("tpr", "fpr", "roc_auc")  # the figures given with their 95% intervals


def _with_intervals(row: dict) -> dict:
    """ "0.475 (0.33-0.63)" cells for tpr, fpr and roc_auc; empty where the figure is nan."""
    out = {}
    for name in INTERVALLED:
        value, low, high = row[name], row[f"{name}_low"], row[f"{name}_high"]
        text = "" if math.isnan(value) else f"{value:.3f}"
        if text and not math.isnan(low):
            text += f" ({low:.2f}-{high:.2f})"
        out[f"{name} (95%)"] = text
    return out
