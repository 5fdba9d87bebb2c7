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
    assert "Scanned 7 images" in proc.stdout
    assert "errors:                 5" in proc.stdout
    assert "test-red: 1 of 7" in proc.stdout
    assert "detector test-fails-to-load skipped: FileNotFoundError" in proc.stderr
    # The third-party package installed from tests/example_plugin ran and was stored.
    stored = json.loads(cli("results", "-d", "example-ela-brightness", "-f", "json").stdout)
    assert len(stored) == 8 and stored[0]["detector_version"] == "0.1.0"
    again = cli("scan", image_dir, "--json")
    summary = json.loads(again.stdout)
    assert summary["scanned"] == 0 and summary["unchanged"] == 12 and summary["seen"] == 14


def test_results_formats_and_filters(cli, image_dir):
    cli("scan", image_dir, *TWO)
    rows = json.loads(cli("results", "--format", "json").stdout)
    assert len(rows) == 16  # 8 good paths x 2 detectors
    assert {"path", "sha256", "detector", "score", "label", "overall"} <= set(rows[0])
    fake = json.loads(cli("results", "--label", "fake", "--format", "json").stdout)
    assert [(os.path.basename(r["path"]), r["detector"]) for r in fake] == [("red.jpg", "test-red")]
    assert fake[0]["overall"] == "fake"
    lines = cli("results", "--detector", "test-big", "--format", "jsonl").stdout.splitlines()
    assert len(lines) == 8 and all(json.loads(line)["detector"] == "test-big" for line in lines)
    out = cli("results", "--path", "*/sub/*", "-f", "csv").stdout
    table = list(csv.DictReader(io.StringIO(out)))
    assert len(table) == 6 and all("/sub/" in r["path"] for r in table)
    high = json.loads(cli("results", "--min-score", "0.2", "--since", "1h", "-f", "json").stdout)
    assert high and all(r["score"] >= 0.2 for r in high)
    future = json.loads(cli("results", "--since", "2999-01-01", "-f", "json").stdout)
    assert future == []
    assert "red.jpg" in cli("results").stdout  # the table


def test_show_prints_verdicts_and_writes_the_ela_png(cli, image_dir, tmp_path):
    cli("scan", image_dir, *TWO)
    proc = cli("show", image_dir / "red.jpg", "--ela", tmp_path / "red-ela.png")
    assert "Overall: fake" in proc.stdout and "flagged by test-red" in proc.stdout
    assert "not-applicable" in proc.stdout  # test-big: 64x64 is too small
    assert Image.open(tmp_path / "red-ela.png").size == (64, 64)
    report = json.loads(cli("show", image_dir / "clean1.jpg", "--json").stdout)
    assert report["overall"] == "real" and len(report["verdicts"]) == 2
    by_sha = json.loads(cli("show", report["sha256"][:10], "--json").stdout)
    assert by_sha["sha256"] == report["sha256"]
    assert os.path.exists(tmp_path / report["written"][0])


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


def test_exit_codes(cli, image_dir, tmp_path):
    cli("scan", image_dir, "--detector", "test-red")
    assert "not in the database" in cli("show", tmp_path / "nowhere.jpg", expect=1).stderr
    cli("results", "--label", "maybe", expect=2)
    cli("scan", image_dir, "--detector", "no-such-detector", expect=2)
    cli("scan", tmp_path / "missing-folder", expect=2)
    bad_db = cli("results", "--db", tmp_path / "no" / "folder" / "x.db", expect=3)
    assert "is not a folder" in bad_db.stderr


def test_a_detector_off_by_default_runs_only_when_named(cli, registry, image_dir):
    registry.add("test-off", "sample_detectors:OffByDefault")
    rows = {r["name"]: r for r in json.loads(cli("detectors", "--format", "json").stdout)}
    assert rows["test-off"]["default"] == "off" and rows["test-red"]["default"] == "on"
    unasked = cli("scan", image_dir)
    assert "off by default" in unasked.stderr and "test-off" in unasked.stderr
    assert "test-off:" not in unasked.stdout
    asked = cli("scan", image_dir, "-d", "test-off", "--json")
    assert json.loads(asked.stdout)["flagged"] == {"test-off": 1}
