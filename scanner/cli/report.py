"""The `report` command: the results database as a static HTML report (scanner/report)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress

from scanner.cli.common import EXIT_USAGE, DbOption, InUseOption, _fail, _in_use, _open, app
from scanner.report import ReportError, build


@app.command()
def report(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            metavar="FOLDER",
            help="Folder to write the report into (made if missing; an earlier report there is "
            "updated, its pictures reused).",
        ),
    ],
    db: DbOption = None,
    detector: InUseOption = None,
) -> None:
    """Write a self-contained HTML report of everything scanned, most suspicious first.

    A summary (verdicts per detector, score histograms with thresholds), then one card per
    file with its thumbnail, ELA image, heatmap overlays, scores and evidence. Open
    FOLDER/index.html in a browser: no server, nothing loaded from the network.

    Example: scanner report --db results.db --out report/ && xdg-open report/index.html
    """
    database = _open(db)
    in_use = _in_use(database, detector)
    console = Console(stderr=True)
    try:
        with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
            task = bar.add_task("pictures", total=None)
            built = build(
                database,
                out.expanduser(),
                in_use,
                lambda done, total: bar.update(task, completed=done, total=total),
            )
    except ReportError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    except OSError as exc:
        raise _fail(f"cannot write the report: {exc.strerror or exc}", EXIT_USAGE) from None
    typer.echo(
        f"wrote {built.folder / 'index.html'}: {built.images} files, "
        f"{built.pictures_made} pictures made, {built.pictures_reused} reused"
    )
