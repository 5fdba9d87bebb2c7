"""The command line, run as a user runs it: a real process, a real database file."""

import csv
import io
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

TWO = ("-d", "test-red", "-d", "test-big")  # the test detectors, whose answers are known


@pytest.fixture
def cli(registry, tmp_path, db_url):
    """Run `scanner ...` in a subprocess with the test detectors and a broken one installed."""
    registry.add("test-red", "sample_detectors:Redness")
    registry.add("test-big", "sample_detectors:NeedsBigImages")
    registry.add("test-fails-to-load", "sample_detectors:FailsToLoad")
    env = os.environ | {"PYTHONPATH": registry.pythonpath, "SCANNER_DB": db_url}

    def run(*args, expect=0):
        proc = subprocess.run(
            [sys.executable, "-m", "scanner", *map(str, args)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == expect, proc.stderr + proc.stdout
        return proc

    return run


def test_scan_summarises_and_warns_about_broken_plugins(cli, image_dir):
    proc = cli("scan", image_dir)
    assert "Scanned 8 images" in proc.stdout  # truncated.jpg is scored as far as it decodes
    assert "errors:                 4" in proc.stdout
    assert "test-red: 1 of 8" in proc.stdout
    assert "detector test-fails-to-load skipped: FileNotFoundError" in proc.stderr
    # The third-party package installed from tests/example_plugin ran and was stored.
    stored = json.loads(
        cli("results", "-d", "example-ela-brightness", "--per-detector", "-f", "json").stdout
    )
    assert len(stored) == 9 and stored[0]["detector_version"] == "0.1.0"
    assert "not images, skipped:    1  (text 1; --verbose names them)" in proc.stdout
    again = cli("scan", image_dir, "--json")
    summary = json.loads(again.stdout)
    assert summary["scanned"] == 0 and summary["unchanged"] == 12 and summary["seen"] == 14
    assert summary["skipped"] == {"text": 1}
    verbose = cli("scan", image_dir, "--verbose").stderr
    assert f"not-image: {image_dir / 'notes.txt'} (text)" in verbose


def test_results_lists_one_row_per_image_by_default(cli, image_dir):
    cli("scan", image_dir, *TWO)
    rows = json.loads(cli("results", "--format", "json").stdout)
    assert len(rows) == 13  # one per path with a file row: 9 scanned, 4 that could not be
    assert list(rows[0]) == [
        "path",
        "overall",
        "score",
        "flagged_by",
        "checked_by",
        "errors",
        "sha256",
        "scanned_at",
    ]
    by_name = {os.path.basename(r["path"]): r for r in rows}
    assert by_name["red.jpg"]["overall"] == "fake"
    assert by_name["red.jpg"]["flagged_by"] == ["test-red"]
    assert by_name["clean1.jpg"]["overall"] == "no-sign"
    assert by_name["clean1.jpg"]["checked_by"] == ["test-big", "test-red"]
    assert len(by_name["clean1.jpg"]["sha256"]) == 64
    assert by_name["red.jpg"]["scanned_at"].endswith("Z")
    # Errors are in the listing: a damaged file scored anyway, and files that could not be.
    assert [e["kind"] for e in by_name["truncated.jpg"]["errors"]] == ["truncated"]
    assert by_name["truncated.jpg"]["overall"] in ("fake", "no-sign")
    assert by_name["bomb.png"]["overall"] == "error" and by_name["bomb.png"]["sha256"] is None
    assert by_name["broken-link.jpg"]["errors"][0]["kind"] == "broken-link"
    failed = json.loads(cli("results", "--overall", "error", "--format", "json").stdout)
    assert {os.path.basename(r["path"]) for r in failed} == {
        "bomb.png",
        "broken-link.jpg",
        "corrupt.jpg",
        "renamed-text.jpg",
    }
    assert "decompression-bomb" in cli("results", "--overall", "error").stdout
    fake = json.loads(cli("results", "--overall", "FAKE", "--format", "json").stdout)
    assert [os.path.basename(r["path"]) for r in fake] == ["red.jpg"]
    out = cli("results", "--path", "*/sub/*", "-f", "csv").stdout
    table = list(csv.DictReader(io.StringIO(out)))
    assert len(table) == 3 and all("/sub/" in r["path"] for r in table)
    assert set(table[0]) == set(rows[0])  # CSV has the JSON's fields
    high = json.loads(cli("results", "--min-score", "0.2", "--since", "1h", "-f", "json").stdout)
    assert high and all(r["score"] >= 0.2 for r in high)
    assert json.loads(cli("results", "--since", "2999-01-01T00:00:00Z", "-f", "json").stdout) == []
    assert len(json.loads(cli("results", "--limit", "2", "-f", "json").stdout)) == 2
    assert "red.jpg" in cli("results").stdout  # the table


def test_results_per_detector_rows_carry_threshold_and_reason(cli, image_dir):
    cli("scan", image_dir, *TWO)
    rows = json.loads(cli("results", "--per-detector", "--format", "json").stdout)
    assert len(rows) == 18  # 9 scanned paths x 2 detectors
    assert {"path", "sha256", "detector", "score", "label", "threshold", "reason"} <= set(rows[0])
    fake = json.loads(cli("results", "--label", "Fake", "--format", "json").stdout)
    assert [(os.path.basename(r["path"]), r["detector"]) for r in fake] == [("red.jpg", "test-red")]
    assert fake[0]["overall"] == "fake" and fake[0]["threshold"] == 0.6
    lines = cli("results", "-d", "test-big", "--per-detector", "-f", "jsonl").stdout.splitlines()
    assert len(lines) == 9 and all(json.loads(line)["detector"] == "test-big" for line in lines)
    table = list(csv.DictReader(io.StringIO(cli("results", "--per-detector", "-f", "csv").stdout)))
    assert {"threshold", "reason"} <= set(table[0])
    assert "smaller than 100 pixels" in cli("results", "--per-detector").stdout


def test_overall_counts_only_the_detectors_in_use(cli, registry, image_dir):
    """A run of an off-by-default detector is kept, shown on request, and never votes unasked."""
    registry.add("test-alarm", "sample_detectors:Alarm")
    cli("scan", image_dir, *TWO)
    cli("scan", image_dir, "-d", "test-alarm")  # flags every image
    default = json.loads(cli("results", "-f", "json").stdout)
    assert {r["overall"] for r in default} == {"fake", "no-sign", "error"}
    assert [os.path.basename(r["path"]) for r in default if r["overall"] == "fake"] == ["red.jpg"]
    named = json.loads(cli("results", "-d", "test-alarm", "-f", "json").stdout)
    assert {r["overall"] for r in named} == {"fake", "error"}
    assert sum(r["overall"] == "fake" for r in named) == 9
    shown = json.loads(cli("show", image_dir / "clean1.jpg", "--json").stdout)
    assert shown["overall"] == "no-sign"
    assert "test-alarm" not in {v["detector"] for v in shown["verdicts"]}
    everything = cli("show", image_dir / "clean1.jpg", "--all").stdout
    assert "test-alarm" in everything and "Overall: no-sign" in everything
    assert (
        "1 stored verdicts of detectors not in use" in cli("show", image_dir / "clean1.jpg").stdout
    )
    cli("results", "-d", "no-such-detector", expect=2)
    # A picture no detector in use could judge is unknown, never "real".
    small = json.loads(cli("results", "-d", "test-big", "-f", "json").stdout)
    assert {os.path.basename(r["path"]): r["overall"] for r in small}["red.jpg"] == "unknown"


def test_a_changed_setting_reruns_the_detectors_it_affects(cli, image_dir):
    cli("scan", image_dir, *TWO)
    again = json.loads(cli("scan", image_dir, *TWO, "--ela-quality", "80", "--json").stdout)
    assert again["scanned"] == 8  # test-big reads the ELA image: it runs again
    rows = json.loads(cli("results", "--per-detector", "-f", "json", *TWO).stdout)
    settings = {r["detector"]: r["settings"] for r in rows}
    assert settings == {"test-big": {"ela_quality": 80}, "test-red": None}
    same = json.loads(cli("scan", image_dir, *TWO, "--ela-quality", "80", "--json").stdout)
    assert same["scanned"] == 0
    forced = json.loads(
        cli("scan", image_dir, *TWO, "--ela-quality", "80", "--rescan", "--json").stdout
    )
    assert forced["scanned"] == 8 and forced["unchanged"] == 0


def test_show_lists_the_metadata_findings(cli, tmp_path):
    from conftest import jpeg_bytes, photo

    exif = Image.Exif()
    exif[0x0131] = "Adobe Photoshop 2025"
    folder = tmp_path / "edited"
    folder.mkdir()
    (folder / "edited.jpg").write_bytes(jpeg_bytes(photo(3), 90, exif=exif))
    cli("scan", folder, "-d", "metadata")
    out = cli("show", folder / "edited.jpg").stdout
    assert "metadata:\n  editing-software (0.4): saved by a retouching program" in out
    assert "jpeg-quality (0.0): estimated JPEG quality 90" in out


def test_detectors_lists_loaded_and_failed(cli):
    rows = {r["name"]: r for r in json.loads(cli("detectors", "--format", "json").stdout)}
    assert rows["test-red"]["status"] == "loaded" and rows["test-red"]["version"] == "1"
    assert rows["test-fails-to-load"]["status"] == "failed"
    assert "model.onnx is missing" in rows["test-fails-to-load"]["error"]
    assert rows["example-ela-brightness"]["package"] == "scanner-example-plugin 0.1.0"


def test_errors_lists_the_bad_files(cli, image_dir):
    cli("scan", image_dir, *TWO)
    rows = json.loads(cli("errors", "--format", "json").stdout)
    kinds = {r["kind"] for r in rows}
    assert kinds == {"truncated", "corrupt", "decompression-bomb", "broken-link"}
    assert len(json.loads(cli("errors", "--kind", "corrupt", "-f", "json").stdout)) == 2


def test_show_of_a_file_that_could_not_be_read_says_why(cli, image_dir):
    cli("scan", image_dir, *TWO)
    shown = cli("show", image_dir / "renamed-text.jpg", expect=1).stderr
    assert "could not be scanned (corrupt: " in shown and "scan it first" not in shown
    assert "corrupt: " in cli("show", image_dir / "corrupt.jpg", expect=1).stderr


def test_exit_codes(cli, image_dir, tmp_path):
    cli("scan", image_dir, "--detector", "test-red")
    assert "not in the database" in cli("show", tmp_path / "nowhere.jpg", expect=1).stderr
    cli("results", "--label", "maybe", expect=2)
    cli("scan", image_dir, "--detector", "no-such-detector", expect=2)
    cli("scan", tmp_path / "missing-folder", expect=2)
    bad_db = cli("scan", image_dir, "--db", tmp_path / "no" / "folder" / "x.db", expect=3)
    assert "is not a folder" in bad_db.stderr
    for args in (("--limit", "0"), ("--min-score", "1.5"), ("--overall", "real")):
        cli("results", *args, expect=2)


def test_a_detector_off_by_default_runs_only_when_named(cli, registry, image_dir):
    registry.add("test-off", "sample_detectors:OffByDefault")
    rows = {r["name"]: r for r in json.loads(cli("detectors", "--format", "json").stdout)}
    assert rows["test-off"]["default"] == "off" and rows["test-red"]["default"] == "on"
    unasked = cli("scan", image_dir)
    assert "off by default" in unasked.stderr and "test-off" in unasked.stderr
    assert "test-off:" not in unasked.stdout
    asked = cli("scan", image_dir, "-d", "test-off", "--json")
    assert json.loads(asked.stdout)["flagged"] == {"test-off": 1}


def test_a_scan_of_the_default_set_does_not_load_the_detectors_that_are_off(
    cli, registry, image_dir
):
    """Their models are not read (a default scan had loaded every installed model): one whose
    model is missing raises no warning in such a scan; `scanner detectors` and a scan that
    names it still report it."""
    registry.add("test-off-broken", "sample_detectors:OffAndBroken")
    unasked = cli("scan", image_dir)
    assert "test-off-broken skipped" not in unasked.stderr
    assert "off by default" in unasked.stderr and "test-off-broken" in unasked.stderr
    rows = {r["name"]: r for r in json.loads(cli("detectors", "--format", "json").stdout)}
    assert rows["test-off-broken"]["status"] == "failed"
    assert "model.onnx is missing" in rows["test-off-broken"]["error"]
    named = cli("scan", image_dir, "-d", "test-off-broken", "-d", "test-red")
    assert "test-off-broken skipped" in named.stderr and "model.onnx is missing" in named.stderr


def test_adding_a_detector_keeps_the_others_flags_in_the_summary(cli, registry, image_dir):
    """A second scan that adds a detector runs only that one on pictures already judged; the
    summary still counts what the others found in them (stored), not zero."""
    registry.add("test-off", "sample_detectors:OffByDefault")

    def red_verdicts():
        rows = cli("results", "-d", "test-red", "--per-detector", "-f", "json").stdout
        return sorted((r["sha256"], r["scanned_at"]) for r in json.loads(rows))

    first = json.loads(cli("scan", image_dir, "-d", "test-red", "--json").stdout)
    assert first["flagged"] == {"test-red": 1}
    before = red_verdicts()
    added = json.loads(cli("scan", image_dir, "-d", "test-red", "-d", "test-off", "--json").stdout)
    assert added["scanned"] == first["scanned"]  # judged again, by test-off only
    assert red_verdicts() == before  # test-red did not run again
    assert added["flagged"] == {"test-red": 1, "test-off": 1}


@pytest.mark.parametrize("command", ["results", "show", "errors", "status"])
def test_read_commands_never_create_a_database(cli, tmp_path, command):
    target = tmp_path / "absent.db"
    args = [command, "--db", target] + (["abc123"] if command == "show" else [])
    proc = cli(*args, expect=3)
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    assert not target.exists()


def test_a_sqlite_file_that_is_not_ours_is_refused_not_migrated(cli, tmp_path, image_dir):
    import sqlite3

    theirs = tmp_path / "theirs.db"
    with sqlite3.connect(theirs) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    before = theirs.read_bytes()
    assert "not a scanner database" in cli("results", "--db", theirs, expect=3).stderr
    assert "not a scanner database" in cli("scan", image_dir, "--db", theirs, expect=3).stderr
    assert theirs.read_bytes() == before
    text_file = tmp_path / "notes.db"
    text_file.write_text("not sqlite at all " * 100)
    assert "Traceback" not in cli("status", "--db", text_file, expect=3).stderr


def test_postgresql_without_its_driver_is_one_clean_line(cli, tmp_path):
    blocker = tmp_path / "blocked" / "psycopg"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'psycopg'\")")
    proc = subprocess.run(
        [sys.executable, "-m", "scanner", "results", "--db", "postgresql+psycopg://u@localhost/x"],
        env=os.environ | {"PYTHONPATH": str(tmp_path / "blocked")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3
    assert (
        proc.stderr.strip() == "error: PostgreSQL needs its driver: pip install 'scanner[postgres]'"
    )


def test_default_database_is_in_the_per_user_data_folder(registry, tmp_path, image_dir):
    registry.add("test-red", "sample_detectors:Redness")
    env = {k: v for k, v in os.environ.items() if k != "SCANNER_DB"}
    env |= {"XDG_DATA_HOME": str(tmp_path / "data"), "PYTHONPATH": registry.pythonpath}
    work = tmp_path / "elsewhere"
    work.mkdir()

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "scanner", *map(str, args)],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
        )

    assert run("scan", image_dir / "clean1.jpg", "-d", "test-red").returncode == 0
    expected = tmp_path / "data" / "scanner" / "scanner.db"
    assert expected.is_file() and os.listdir(work) == []
    status = run("status")
    assert f"database: sqlite:///{expected}" in status.stdout


def test_help_renders_plain_types_and_defaults(cli):
    for command in ("scan", "results", "show", "watch", "evaluate", "status"):
        text = cli(command, "--help").stdout
        for bad in ("<bool>", "<list", "{paths}", "<str>", "<int"):
            assert bad not in text, (command, bad)
    assert "[default: 300.0]" in cli("watch", "--help").stdout


def test_every_command_is_summed_up_in_one_line():
    """`scanner --help` lists each command by its docstring's first paragraph, line breaks
    and all: a paragraph over two lines printed a sentence broken in the middle."""
    from typer.main import get_command

    from scanner.cli import app

    for name, command in get_command(app).commands.items():
        summary = (command.help or "").strip().split("\n\n")[0]
        assert summary and "\n" not in summary and len(summary) <= 100, (name, summary)


def test_evaluate_prints_strict_json_with_null_for_undefined_metrics(cli, tmp_path):
    from conftest import jpeg_bytes, photo

    folder = tmp_path / "labelled"
    (folder / "fake").mkdir(parents=True)
    (folder / "real").mkdir()
    (folder / "fake" / "red.jpg").write_bytes(jpeg_bytes(Image.new("RGB", (64, 64), (250, 0, 0))))
    (folder / "real" / "photo.jpg").write_bytes(jpeg_bytes(photo(1), 90))
    out = cli("evaluate", folder, "-d", "test-big", "-f", "json").stdout
    rows = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    big = rows[0]  # judged only the real photo: the fake is too small
    assert (big["n_fake"], big["n_real"]) == (0, 1)
    assert big["accuracy"] is None and big["roc_auc"] is None and big["tpr"] is None
    assert big["fpr"] == 0.0
    # One real photo not flagged: a false-positive rate anywhere from 0 to 79%, said so.
    assert big["fpr_low"] == 0.0 and 0.7 < big["fpr_high"] < 0.8
    assert big["tpr_low"] is None and big["tpr_high"] is None
    assert big["threshold"] == 0.5  # the rates are at the detector's own threshold, shown


def test_hostile_names_reach_no_terminal_and_no_spreadsheet(cli, tmp_path):
    from conftest import jpeg_bytes, photo

    folder = tmp_path / "hostile"
    (folder / "[").mkdir(parents=True)  # paths then contain "[/]", Rich's closing tag
    names = ["[/]oops[bold].jpg", "\x1b]0;pwned\x07title.jpg", "line\nforged.jpg"]
    for i, name in enumerate(names):
        (folder / name).write_bytes(jpeg_bytes(photo(i), 85))
    (folder / "[/]broken\x1b[2J.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 50)
    cli("scan", folder, *TWO)
    for args in (("results",), ("results", "--per-detector"), ("errors",)):
        out = cli(*args).stdout
        assert "\x1b" not in out and "\x07" not in out, args
        assert "[/]oops[bold].jpg" in out or "[/]broken\\x1b[2J.jpg" in out, args
    assert "\\x1b]0;pwned\\x07title.jpg" in cli("results").stdout
    assert "line\\x0aforged.jpg" in cli("results").stdout
    shown = cli("show", folder / names[1]).stdout
    assert "\x1b" not in shown and "\\x1b]0;pwned" in shown
    # JSON keeps the exact names.
    exact = {r["path"] for r in json.loads(cli("results", "-f", "json").stdout)}
    assert exact == {str(folder / name) for name in [*names, "[/]broken\x1b[2J.jpg"]}


def test_watch_rejects_a_zero_reconcile_interval(cli, tmp_path):
    assert "reconcile" in cli("watch", tmp_path, "--reconcile", "0", expect=2).stderr
