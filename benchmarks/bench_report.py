"""The HTML report at scale: writing it, writing it again, and opening it in a browser.

    python benchmarks/bench_report.py [--images 20000] [--keep DIR]

Makes N small JPEGs (96x64, each its own picture), scans them with the `metadata` and
`provenance` detectors (cheap: the report is what is measured), then prints:
- the first `scanner report` (every picture made) and a second one into the same folder (every
  picture reused), in seconds and as a ratio to the scan;
- the size of data.js and of the folder;
- in Chromium (headless, Playwright; skipped without either): the time until the first page
  of cards is drawn, how many <img> elements the page holds (one page of cards, not N), and
  the time a path filter takes to redraw.
Absolute times vary between machines; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_images(folder: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    for n in range(count):
        pixels = base.copy()
        pixels[n % 64, :, :] = n % 256  # each file its own picture (distinct hashes)
        pixels[:, (n // 64) % 96, 0] = (n // 256) % 256
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=85)
        sub = folder / f"{n // 1000:03d}"
        sub.mkdir(exist_ok=True)
        (sub / f"img{n:06d}.jpg").write_bytes(buffer.getvalue())


def timed(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "scanner", *args], check=True, capture_output=True)
    return time.perf_counter() - start


def browser(index: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if not chromium:
        print("browser: skipped (needs Chromium and Playwright)")
        return
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = launched.new_page()
        start = time.perf_counter()
        page.goto(index.as_uri())
        page.wait_for_selector("article.card")
        drawn = time.perf_counter() - start
        images = page.locator("img").count()
        start = time.perf_counter()
        page.fill("#f-path", "img00012")
        page.wait_for_function("document.querySelectorAll('article.card').length === 10")
        filtered = time.perf_counter() - start
        print(f"browser: first page drawn in {drawn:.2f} s; <img> elements in the page: {images}")
        print(f"browser: path filter redrawn in {filtered:.2f} s")
        launched.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-report-"))
    folder, db, out = work / "images", work / "results.db", work / "report"
    folder.mkdir(parents=True, exist_ok=True)
    make_images(folder, args.images)
    detectors = ["-d", "metadata", "-d", "provenance"]
    scan = timed("scan", str(folder), "--db", str(db), *detectors)
    first = timed("report", "--db", str(db), "--out", str(out), *detectors)
    second = timed("report", "--db", str(db), "--out", str(out), *detectors)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{args.images} images; scan {scan:.1f} s")
    print(f"first report {first:.1f} s ({first / scan:.2f}x the scan)")
    print(f"second report {second:.1f} s ({second / first:.2f}x the first: pictures reused)")
    print(f"data.js {(out / 'data.js').stat().st_size / 1e6:.1f} MB; folder {size / 1e6:.0f} MB")
    browser(out / "index.html")
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
