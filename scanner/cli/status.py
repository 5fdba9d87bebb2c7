"""`scanner status`: which database is used, its totals, and the watch daemons writing to it."""

from __future__ import annotations

import socket
from datetime import datetime
from typing import Annotated

import typer
from sqlalchemy.engine import make_url

from scanner.cli.common import EXIT_NOT_FOUND, DbOption, _fail, _open, app
from scanner.output import dumps, printable
from scanner.pipeline import gone_from_this_host
from scanner.store import queries
from scanner.store.database import iso, utcnow


def _ago(moment) -> str:
    if moment is None:
        return "never"
    return f"{(utcnow() - moment).total_seconds():.0f} s ago"


def _watcher_state(watcher: dict) -> str:
    """running, stopped, gone (its process is not running on this host), or not responding
    (no heartbeat for two intervals: stopped without saying, or busy, on another host)."""
    if watcher["stopped_at"]:
        return "stopped"
    if gone_from_this_host(watcher["id"]):
        return "gone"
    every = watcher.get("heartbeat_every") or 5.0
    age = (utcnow() - watcher["heartbeat_at"]).total_seconds()
    return "running" if age <= 2 * every + 1 else "not responding"


@app.command()
def status(
    db: DbOption = None,
    forget: Annotated[
        bool,
        typer.Option("--forget", help="Delete the rows of watch daemons that stopped or are gone."),
    ] = False,
    healthy: Annotated[
        bool,
        typer.Option(
            "--healthy",
            help="Exit 1 unless a watch daemon on this machine is running (for health checks).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Which database is used, its totals, and the state of each watch daemon writing to it.

    Example: scanner status --db results.db
    """
    database = _open(db)
    report = queries.status(database)
    for watcher in report["watchers"]:
        watcher["state"] = _watcher_state(watcher)
    if healthy:
        here = socket.gethostname()
        live = [
            w["id"]
            for w in report["watchers"]
            if w["state"] == "running" and w["id"].rpartition(":")[0] == here
        ]
        if not live:
            raise _fail(f"no watch daemon is running on {here}", EXIT_NOT_FOUND)
        typer.echo(f"healthy: {', '.join(live)} running")
        return
    if forget:
        ended = [w["id"] for w in report["watchers"] if w["state"] in ("stopped", "gone")]
        if ended:
            database.forget_watchers(ended)
        report["forgotten"] = ended
        report["watchers"] = [w for w in report["watchers"] if w["id"] not in ended]
    report = {"database": _display_url(database.url)} | report
    if as_json:
        for item in [report, *report["watchers"]]:
            for key, value in item.items():
                if isinstance(value, datetime):
                    item[key] = iso(value)
        typer.echo(dumps(report, indent=2))
        return
    labels = ", ".join(f"{k} {v}" for k, v in sorted(report["verdicts"].items())) or "none"
    typer.echo(f"database: {report['database']}")
    typer.echo(
        f"images {report['images']}, files {report['files']}, errors {report['errors']}, "
        f"last scan {_ago(report['last_scan_at'])}"
    )
    typer.echo(f"verdicts: {labels}")
    for w in report["watchers"]:
        typer.echo(
            f"watcher {w['id']} {w['state']}: {printable(w['roots'])} queue={w['queue_length']} "
            f"scanned={w['scanned']} errors={w['errors']} heartbeat {_ago(w['heartbeat_at'])}"
        )
    for ended in report.get("forgotten", []):
        typer.echo(f"forgot watcher {ended}")


def _display_url(url: str) -> str:
    """The database URL without its password."""
    return make_url(url).render_as_string(hide_password=True)
