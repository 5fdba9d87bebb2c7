"""Printing rows as a table, JSON, JSON lines or CSV: the one place the CLI formats data."""

from __future__ import annotations

import csv
import enum
import json
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table


class Format(str, enum.Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def emit(rows: Sequence[dict], fmt: Format, columns: Sequence[str]) -> None:
    """Write rows to stdout. JSON formats carry every key; table and CSV carry `columns`."""
    if fmt is Format.json:
        json.dump(list(rows), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    elif fmt is Format.jsonl:
        for row in rows:
            sys.stdout.write(json.dumps(row, default=str) + "\n")
    elif fmt is Format.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    else:
        table = Table(*columns, box=None, pad_edge=False, header_style="bold")
        for row in rows:
            table.add_row(*(_cell(row.get(c)) for c in columns))
        # Piped output gets a wide virtual terminal, so that paths are not folded.
        Console(width=None if sys.stdout.isatty() else 400).print(table)
