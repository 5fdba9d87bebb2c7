"""`scanner report` and `scanner show --out`, as a user runs them (a real process, a real
database from a real scan), and the report opened in a real browser: Debian's Chromium,
headless, driven by Playwright. The browser tests skip, saying why, where no Chromium is
installed; .ci/run installs it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import jpeg_bytes, photo
from PIL import Image

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
KODAK = DATA / "real_lossless" / "real" / "kodim05.png"
HOSTILE = "<img src=x onerror=alert(1)>.jpg"
# Quoted by the metadata detector's finding, so the report shows it: as text.
SOFTWARE = 'Adobe Photoshop </script><img src=x onerror="document.title=1">'
DETECTORS = ("-d", "copy-move", "-d", "metadata", "-d", "provenance")
CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)


def scanner(*args, env=None, expect=0) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "scanner", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == expect, proc.stderr + proc.stdout
    return proc


@pytest.fixture(scope="module")
def scanned(tmp_path_factory) -> tuple[Path, Path]:
    """A folder scanned into a database: a cloned region in a real photo, hostile names and
    metadata, a corrupt file, and enough small photos for more than one page of cards."""
    root = tmp_path_factory.mktemp("report")
    pictures = root / "pictures"
    pictures.mkdir()
    if KODAK.exists():
        forged = Image.open(KODAK).convert("RGB")
        forged.paste(forged.crop((304, 196, 464, 316)), (20, 20))
        forged.save(pictures / "cloned.jpg", quality=80)
    exif = Image.Exif()
    exif[0x010E] = "<script>document.title='pwned-exif'</script>"
    exif[0x0131] = SOFTWARE
    photo(1).save(pictures / HOSTILE, quality=90)
    photo(2).save(pictures / "hostile-exif.jpg", quality=90, exif=exif)
    (pictures / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(800))
    for n in range(52):
        (pictures / f"small{n:02d}.jpg").write_bytes(jpeg_bytes(photo(100 + n, (96, 64)), 85))
    db = root / "results.db"
    scanner("scan", pictures, "--db", db, *DETECTORS)
    return pictures, db


@pytest.fixture(scope="module")
def report(scanned) -> Path:
    _, db = scanned
    out = scanned[0].parent / "report"
    proc = scanner("report", "--db", db, "--out", out, *DETECTORS)
    assert "pictures made" in proc.stdout
    return out


def test_the_report_is_a_static_folder_with_a_strict_policy(report):
    page = (report / "index.html").read_text()
    assert "Content-Security-Policy" in page and "script-src 'self'" in page
    # Every script is a file of its own: no inline script, no handler attributes.
    assert all(re.search(r'src="[\w.]+\.js"', tag) for tag in re.findall(r"<script[^>]*>", page))
    assert " on" not in " ".join(re.findall(r"<[^>]+>", page)).lower().replace(" one", "")
    assert "http://" not in page and "https://" not in page
    data = json.loads((report / "data.js").read_text().split("=", 1)[1].rstrip().rstrip(";"))
    assert len(data["entries"]) == 56 if KODAK.exists() else 55
    assert data["entries"][0]["overall"] == "fake"  # most suspicious first
    for entry in data["entries"]:
        for relative in [entry.get("thumb"), entry.get("ela")] + [
            v["overlay"] for v in entry.get("verdicts", []) if v["overlay"]
        ]:
            assert relative is None or (report / relative).is_file()


@pytest.mark.skipif(not KODAK.exists(), reason=f"needs {KODAK}")
def test_the_cloned_photo_has_an_overlay_marking_both_regions(report):
    data = json.loads((report / "data.js").read_text().split("=", 1)[1].rstrip().rstrip(";"))
    entry = next(e for e in data["entries"] if e["path"].endswith("cloned.jpg"))
    assert entry["overall"] == "fake" and entry["flagged_by"] == ["copy-move"]
    overlay = next(v["overlay"] for v in entry["verdicts"] if v["detector"] == "copy-move")
    picture = Image.open(report / overlay)
    assert picture.size == Image.open(report / entry["thumb"]).size  # the photo's aspect ratio
    assert abs(picture.width / picture.height - 768 / 512) < 0.02


def test_a_second_report_reuses_every_picture(scanned, report):
    proc = scanner("report", "--db", scanned[1], "--out", report, *DETECTORS)
    assert " 0 pictures made" in proc.stdout, proc.stdout


def test_a_folder_that_is_not_a_report_is_never_overwritten(scanned, tmp_path):
    (tmp_path / "index.html").write_text("someone's page")
    proc = scanner("report", "--db", scanned[1], "--out", tmp_path, expect=2)
    assert "holds no scanner report" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "index.html").read_text() == "someone's page"


def test_show_writes_one_picture_with_every_panel(scanned, tmp_path):
    pictures, db = scanned
    name = "cloned.jpg" if KODAK.exists() else HOSTILE
    out = tmp_path / "sheet.png"
    proc = scanner("show", pictures / name, "--db", db, "--out", out, *DETECTORS)
    assert str(out) in proc.stdout
    sheet = Image.open(out)
    panels = 3 if KODAK.exists() else 2  # photo, ELA, and the copy-move overlay
    assert sheet.width >= panels * 480 and sheet.height > 320


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium; .ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def opened(browser, report: Path, fragment: str = ""):
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.problems = []
    page.on("dialog", lambda d: (page.problems.append(f"dialog {d.message}"), d.dismiss()))
    page.on("pageerror", lambda e: page.problems.append(f"error {e}"))
    page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
    page.goto((report / "index.html").as_uri() + fragment)
    page.wait_for_selector("article.card")
    return page


def test_the_browser_renders_cards_and_hostile_text_stays_text(browser, report, tmp_path):
    page = opened(browser, report)
    total = 56 if KODAK.exists() else 55
    assert page.locator("#shown").inner_text() == f"{total} of {total} files match"
    assert page.locator("article.card").count() == 48  # one page
    assert page.locator(".pager .page").first.inner_text() == "page 1 of 2"
    # The file named like markup is a card whose path reads as that text, and nothing ran.
    page.fill("#f-path", "onerror")
    page.wait_for_function("document.querySelectorAll('article.card').length === 1")
    assert HOSTILE in page.locator("article.card .path").inner_text()
    assert page.locator('img[src="x"]').count() == 0
    page.fill("#f-path", "hostile-exif")
    page.wait_for_function("document.querySelectorAll('article.card').length === 1")
    assert SOFTWARE in page.locator("article.card .evidence").all_inner_texts()[0]
    assert page.locator('img[src="x"]').count() == 0
    assert page.title() == "scanner report" and page.problems == []
    page.fill("#f-path", "")
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert Image.open(tmp_path / "report.png").height > 400


def test_the_filters_change_what_is_shown(browser, report):
    page = opened(browser, report)
    page.select_option("#f-overall", "error")
    page.wait_for_function("document.querySelectorAll('article.card').length === 1")
    assert "corrupt.jpg" in page.locator("article.card .path").inner_text()
    assert "error" in page.locator("article.card .verdict").inner_text()
    page.select_option("#f-overall", "")
    page.fill("#f-path", "small0")
    page.wait_for_function("document.querySelectorAll('article.card').length === 10")
    page.fill("#f-path", "")
    page.click("#pager-top button:has-text('next')")
    page.wait_for_function(
        "document.querySelector('#pager-top .page').textContent === 'page 2 of 2'"
    )
    assert page.locator("article.card").count() == (8 if KODAK.exists() else 7)
    # A filtered view is a link: the same fragment opens the same view.
    linked = opened(browser, report, "#overall=error")
    assert linked.locator("article.card").count() == 1
    assert page.problems == [] and linked.problems == []
