"""Printing rows as a table, JSON, JSON lines or CSV: the one place the CLI formats data.

JSON, JSON lines and CSV carry every field of a row (CSV joins lists with commas); the table
shows the columns asked for. Nothing from the data is ever read as Rich markup: a path with
`[/]` in it is printed as it is.
"""

from __future__ import annotations

import csv
import enum
import json
import math
import shutil
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from scanner.paths import from_text


class Format(str, enum.Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


def _plain(value):
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def dumps(value, **kw) -> str:
    """Strict JSON (null for NaN), for every JSON the CLI prints."""
    return json.dumps(_plain(value), default=str, allow_nan=False, **kw)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else ""
    if isinstance(value, (list, tuple)):
        return ",".join(_cell(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, default=str, sort_keys=True)
    return str(value)


# Characters that must never reach a terminal from data: C0 and C1 controls (escape sequences
# that retitle windows or clear screens, newlines that forge log lines) and the bidirectional
# overrides that make a name read backwards.
_UNSAFE = {
    *range(0x00, 0x20),
    *range(0x7F, 0xA0),
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
}
_ESCAPES = {code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" for code in _UNSAFE}


def printable(text: str) -> str:
    """`text` for a terminal or a text log: control and bidi characters shown as escapes
    (\\x1b, \\u202e), bytes of a file name that are not UTF-8 as \\xff. JSON output keeps the
    exact text."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.translate(_ESCAPES)


def display_path(path: str) -> str:
    """A stored path (scanner/paths.py) for people (see printable)."""
    return printable(from_text(path))


def score_and_threshold(row: dict) -> dict:
    """`row` with its score and threshold as text for a table, with as many decimals (4 to 8)
    as it takes to tell them apart: a score just under its threshold must not print as the
    same number (copy-move's score without a copy is under its threshold by less than 1e-6).
    Equal ones (a score at the threshold is fake) keep 4."""
    score, threshold = row.get("score"), row.get("threshold")
    if not isinstance(score, float) or not isinstance(threshold, float):
        return row
    places = 4
    while score != threshold and places < 8 and f"{score:.{places}f}" == f"{threshold:.{places}f}":
        places += 1
    return row | {"score": f"{score:.{places}f}", "threshold": f"{threshold:.{places}f}"}


def _csv_cell(value) -> str:
    """A CSV cell that a spreadsheet reads as text: a leading =, +, -, @ (a formula) is quoted
    with an apostrophe, as OWASP advises."""
    text = _cell(value)
    if isinstance(value, str) and text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def middle_ellipsis(text: str, width: int) -> str:
    """`text` cut to `width` characters by dropping its middle: the file name at the end of a
    path stays readable."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    tail = max(1, (width - 1) * 2 // 3)
    head = width - 1 - tail
    return text[:head] + "…" + text[len(text) - tail :]


def _fields(rows: Sequence[dict], columns: Sequence[str]) -> list[str]:
    """The columns first, then every other key the rows have, in the order first seen."""
    fields = list(columns)
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    return fields


def emit(
    rows: Sequence[dict], fmt: Format, columns: Sequence[str], shorten: str | None = "path"
) -> None:
    """Write rows to stdout. JSON formats and CSV carry every key; the table carries `columns`,
    and in a terminal too narrow for them, the `shorten` column loses the middle of its text."""
    if fmt is Format.json:
        sys.stdout.write(dumps(list(rows), indent=2) + "\n")
    elif fmt is Format.jsonl:
        for row in rows:
            sys.stdout.write(dumps(row) + "\n")
    elif fmt is Format.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=_fields(rows, columns))
        writer.writeheader()
        writer.writerows({k: _csv_cell(v) for k, v in row.items()} for row in rows)
    else:
        cells = [
            [(display_path if c == "path" else printable)(_cell(row.get(c))) for c in columns]
            for row in rows
        ]
        terminal = sys.stdout.isatty()
        width = shutil.get_terminal_size().columns if terminal else None
        if width and shorten in columns and cells:
            at = list(columns).index(shorten)
            # Columns are separated by two spaces of padding (none at the table's edges).
            others = sum(
                max(len(c), *(len(r[i]) for r in cells)) + 2
                for i, c in enumerate(columns)
                if i != at
            )
            room = max(len(shorten), width - others, 12)
            for r in cells:
                r[at] = middle_ellipsis(r[at], room)
        table = Table(*columns, box=None, pad_edge=False, header_style="bold")
        for r in cells:
            table.add_row(*(Text(value, no_wrap=True, overflow="ellipsis") for value in r))
        # Piped output gets a wide virtual terminal, so that nothing is folded or cut.
        Console(width=width if terminal else 100_000, highlight=False).print(table)
