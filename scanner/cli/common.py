"""What every command shares: the Typer app, common options, opening the database, loading
detectors. Exit codes: 0 done (a scan that met bad images still exits 0 and reports them);
1 the thing asked for does not exist; 2 usage error; 3 database error."""

from __future__ import annotations

import warnings
from typing import Annotated

import typer

from scanner import __version__
from scanner.config import Settings, db_url
from scanner.detectors import discover
from scanner.output import Format
from scanner.pipeline import Pipeline
from scanner.store import Database, DatabaseError

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
DetectorsOption = Annotated[
    list[str] | None,
    typer.Option("--detector", "-d", help="Run only this detector (repeatable)."),
]
ElaQualityOption = Annotated[
    int | None, typer.Option(help="JPEG quality of the ELA re-save. [default: 90]")
]
ElaMaxSideOption = Annotated[
    int | None, typer.Option(help="Longest side of the stored ELA PNG. [default: 1024]")
]
FaceCropsOption = Annotated[
    bool | None,
    typer.Option(
        "--face-crops/--find-faces",
        help="Inputs are face crops: score whole images instead of finding faces.",
    ),
]
BatchSizeOption = Annotated[
    int | None, typer.Option(help="Images per batch and transaction. [default: 16]")
]
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
    # Pillow warns about every broken EXIF tag it meets, without naming the file; over a folder
    # of untrusted images that is noise on stderr. The metadata detector records such problems
    # per image, as findings in its verdict.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")


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
    if only is None:
        off = [d.name for d in detectors if not d.enabled_by_default]
        detectors = [d for d in detectors if d.enabled_by_default]
        if off:
            typer.secho(
                f"note: off by default (see their model cards), enable with -d: {', '.join(off)}",
                err=True,
            )
    if not detectors:
        typer.secho(
            "warning: no detector loaded; images get ELA images but no verdicts "
            "(see `scanner detectors`)",
            err=True,
            fg="yellow",
        )
    return detectors


def _pipeline(db, only, given: dict, on_file=None):
    """The database, the loaded detectors and a Pipeline over them, from the shared options
    (`given`: Settings fields; None means not given)."""
    try:
        settings = Settings(**{k: v for k, v in given.items() if v is not None})
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    database = _open(db)
    detectors = _load_detectors(only)
    return database, detectors, Pipeline(database, detectors, settings, on_file)
