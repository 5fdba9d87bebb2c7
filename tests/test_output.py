"""Formatting rows for people and programs: no markup from data, readable paths, strict JSON."""

import io
import json
import re
import sys

from scanner.output import (
    Format,
    display_path,
    emit,
    middle_ellipsis,
    printable,
    score_and_threshold,
)
from scanner.paths import to_text


def test_middle_ellipsis_keeps_the_file_name():
    path = "/srv/photos/2026/holidays/a-very-long-folder-name/beach.jpg"
    short = middle_ellipsis(path, 30)
    assert len(short) == 30 and short.endswith("beach.jpg") and "…" in short
    assert middle_ellipsis("short.jpg", 30) == "short.jpg"


def test_a_narrow_terminal_shortens_the_path_not_the_verdict(monkeypatch):
    out = io.StringIO()
    out.isatty = lambda: True
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setenv("COLUMNS", "60")
    row = {"path": "/srv/" + "x" * 80 + "/beach.jpg", "overall": "no-sign", "score": 0.25}
    emit([row], Format.table, ["path", "overall", "score"])
    lines = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue()).splitlines()
    assert all(len(line) <= 60 for line in lines)
    assert "beach.jpg" in lines[1] and "no-sign" in lines[1] and "0.2500" in lines[1]


def test_data_is_never_read_as_markup(monkeypatch, capsys):
    row = {"path": "/photos/[/]/[bold]x[/bold].jpg", "overall": "fake"}
    emit([row], Format.table, ["path", "overall"])
    assert "/photos/[/]/[bold]x[/bold].jpg" in capsys.readouterr().out


def test_json_is_strict_and_paths_that_are_not_utf8_display(capsys):
    emit([{"score": float("nan")}], Format.json, ["score"])
    assert json.loads(capsys.readouterr().out) == [{"score": None}]
    undecodable = b"/photos/\xff\xfe.jpg".decode("utf-8", "surrogateescape")
    assert printable(undecodable) == "/photos/\\xff\\xfe.jpg"  # the bytes, as escapes
    assert display_path(to_text(undecodable)) == "/photos/\\xff\\xfe.jpg"  # from the stored form


def test_a_csv_cell_that_looks_like_a_formula_is_text(capsys):
    emit([{"path": "=HYPERLINK(1)", "score": -0.5}], Format.csv, ["path", "score"])
    assert capsys.readouterr().out.splitlines()[1] == "'=HYPERLINK(1),-0.5000"


def test_a_score_just_under_its_threshold_does_not_print_as_the_threshold():
    # copy-move without a copy: sigmoid(bias) against the threshold rounded up to 1e-6.
    row = score_and_threshold({"score": 0.12265590, "threshold": 0.122656, "label": "real"})
    assert (row["score"], row["threshold"]) == ("0.1226559", "0.1226560")
    assert score_and_threshold({"score": 0.4, "threshold": 0.4}) == {
        "score": "0.4000",
        "threshold": "0.4000",
    }
    assert score_and_threshold({"score": 0.93, "threshold": 0.5})["score"] == "0.9300"
    assert score_and_threshold({"score": None, "threshold": None}) == {
        "score": None,
        "threshold": None,
    }
