"""What every command shares: the Typer app, common options, opening the database, loading
detectors. Exit codes: 0 done (a scan that met bad images still exits 0 and reports them);
1 the thing asked for does not exist; 2 usage error; 3 database error."""

from __future__ import annotations

import os
import warnings
from typing import Annotated

import typer

from scanner import __version__
from scanner.config import Settings, db_url, default_db_path
from scanner.detectors import discover, installed_names
from scanner.output import Format
from scanner.pipeline import Pipeline
from scanner.store import Database, DatabaseError, queries

app = typer.Typer(
    help="Find spliced, retouched, deepfaked and generated images, in bulk.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="SQLAlchemy URL or SQLite file. (env: SCANNER_DB; default: scanner.db in the "
        "per-user data folder, see `scanner status`)",
        show_default=False,
    ),
]
FormatOption = Annotated[
    Format, typer.Option("--format", "-f", help="Output format.", case_sensitive=False)
]
LimitOption = Annotated[
    int | None,
    typer.Option(min=1, metavar="N", help="At most this many rows.", show_default=False),
]
DetectorsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--detector",
        "-d",
        metavar="NAME",
        help="Run only this detector (repeatable).",
        show_default=False,
    ),
]
InUseOption = Annotated[
    list[str] | None,
    typer.Option(
        "--detector",
        "-d",
        metavar="NAME",
        help="The detectors whose verdicts count (repeatable). (default: those on by default)",
        show_default=False,
    ),
]
ElaQualityOption = Annotated[
    int | None,
    typer.Option(
        metavar="1-100", help="JPEG quality of the ELA re-save. (default: 90)", show_default=False
    ),
]
ElaMaxSideOption = Annotated[
    int | None,
    typer.Option(
        metavar="PIXELS",
        help="Longest side of the stored ELA PNG. (default: 768)",
        show_default=False,
    ),
]
ElaGreyOption = Annotated[
    bool | None,
    typer.Option(
        "--ela-grey/--ela-colour",
        help="Store the ELA PNG as one grey channel, the largest difference of the three (a "
        "third of the size of colour). (default: --ela-grey)",
        show_default=False,
    ),
]
StoreElaOption = Annotated[
    bool | None,
    typer.Option(
        "--ela/--no-ela",
        help="Store each image's ELA PNG (most of the database's size). (default: --ela)",
        show_default=False,
    ),
]
FaceCropsOption = Annotated[
    bool | None,
    typer.Option(
        "--face-crops/--find-faces",
        help="Inputs are face crops: score whole images instead of finding faces. "
        "(default: --find-faces)",
        show_default=False,
    ),
]
BatchSizeOption = Annotated[
    int | None,
    typer.Option(
        metavar="N", help="Images per batch and transaction. (default: 16)", show_default=False
    ),
]
EXIT_NOT_FOUND, EXIT_USAGE, EXIT_DATABASE = 1, 2, 3


def _print_error(level: str, message: str) -> None:
    typer.secho(f"error: {message}", err=True, fg="red")


_reporter = _print_error


def set_reporter(report) -> None:
    """Send the CLI's error lines to `report(level, message)` (the daemon: its log)."""
    global _reporter
    _reporter = report


def _fail(message: str, code: int) -> typer.Exit:
    """Report `message` as an error; the caller raises the returned Exit."""
    _reporter("error", message)
    return typer.Exit(code)


def _open(db: str | None, *, create: bool = False) -> Database:
    """The database of the --db option. Only `scan` and `watch` pass create=True: the commands
    that read never create or change one."""
    if create and db is None and not os.environ.get("SCANNER_DB"):
        try:
            default_db_path().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _fail(f"cannot create {default_db_path().parent}: {exc}", EXIT_DATABASE) from None
    try:
        return Database(db_url(db), create=create)
    except DatabaseError as exc:
        raise _fail(str(exc), EXIT_DATABASE) from None


def _in_use(database: Database, names: list[str] | None) -> set[str] | None:
    """The detectors whose verdicts vote: the names given (each must be installed or known to
    the database), or None for the database's default set."""
    if not names:
        return None
    known = installed_names() | queries.known_detectors(database)
    unknown = sorted(set(names) - known)
    if unknown:
        raise typer.BadParameter(
            f"no detector named {', '.join(unknown)} (known: {', '.join(sorted(known))})",
            param_hint="--detector",
        )
    return set(names)


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


def _say(level: str, message: str) -> None:
    """A warning or note on stderr, for commands that print for people."""
    if level == "warning":
        typer.secho(f"warning: {message}", err=True, fg="yellow")
    else:
        typer.secho(f"note: {message}", err=True)


def _load_detectors(only: list[str] | None, say=_say):
    """The detectors to run: those named, else those on by default. `say(level, message)`
    hears of broken plugins and of what is off (the daemon passes its logger)."""
    # The default set: detectors off by default are not loaded (their models are not read).
    plugins = discover(only, default_set=only is None)
    missing = sorted(set(only or ()) - {p.name for p in plugins})
    if missing:
        raise typer.BadParameter(
            f"no installed detector named {', '.join(missing)}", param_hint="--detector"
        )
    for plugin in plugins:
        if not plugin.loaded and not plugin.off_by_default:
            say("warning", f"detector {plugin.name} skipped: {plugin.error}")
    detectors = [p.detector for p in plugins if p.loaded]
    off = [p.name for p in plugins if p.off_by_default]
    if off:
        say("note", f"off by default (see their model cards), enable with -d: {', '.join(off)}")
    if not detectors:
        say(
            "warning",
            "no detector loaded; images get ELA images but no verdicts (see `scanner detectors`)",
        )
    return detectors


def _pipeline(db, only, given: dict, on_file=None, say=_say, rescan: bool = False, ray=None):
    """The database, the loaded detectors and a Pipeline over them, from the shared options
    (`given`: Settings fields; None means not given). `ray`: {"address", "cpus"} to work on
    the pictures with Ray Data (scanner/ray_engine.py) instead of the scanner's own workers."""
    try:
        settings = Settings(**{k: v for k, v in given.items() if v is not None})
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    database = _open(db, create=True)
    detectors = _load_detectors(only, say)
    if ray is None:
        pipeline = Pipeline(database, detectors, settings, on_file, rescan=rescan, say=say)
        return database, detectors, pipeline
    from scanner.ray_engine import RayPipeline, RayUnavailable

    try:
        pipeline = RayPipeline(
            database, detectors, settings, on_file, rescan=rescan, say=say, **ray
        )
    except RayUnavailable as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    except (ConnectionError, RuntimeError, ValueError) as exc:  # Ray's own, e.g. no cluster
        raise _fail(f"Ray could not start: {exc}", EXIT_USAGE) from None
    return database, detectors, pipeline
