"""Scan throughput and memory, as ratios against floors measured in the same run.

    python benchmarks/bench_scan.py [--images 200] [--side 1024] [--detectors]

Floors (what any tool must pay at least):
- decode floor: read each file and decode it to RGB with Pillow, nothing else;
- stat floor: walk the folder and stat every file.
Measured:
- first scan (no detectors: decode + sha256 + ELA + PNG + database) / decode floor;
- re-scan of the unchanged folder / stat floor, and its seconds per 1000 files;
- peak resident memory of a process doing the first scan / of one doing the decode floor;
- with --detectors: a first scan with each installed detector alone / the bare first scan,
  i.e. what that detector adds (on these synthetic photos, which have no faces);
- with --large: peak memory of a scan (default detectors) of four 13000x13000 PNGs (169 Mpx
  each: past Pillow's warning limit, under its error limit) among 20 photos of 12 Mpx, against
  the decode floor of the same files. Image work runs in worker processes, so memory is the
  sum of PSS over the scanning process, the fork server and the workers, sampled every 50 ms.
Each phase runs in a fresh process, so peak memory is its own. Absolute times vary between
machines and runs; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import resource
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from scanner.config import Settings
from scanner.detectors import discover
from scanner.pipeline import Pipeline, iter_files
from scanner.store import Database


def make_images(folder: Path, count: int, side: int) -> None:
    """Photo-like JPEGs: smooth structure plus sensor-like noise, qualities 85-94."""
    rng = np.random.default_rng(0)
    h, w = side * 3 // 4, side
    base = Image.fromarray(rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8))
    base = base.resize((w, h), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(2))
    pixels = np.asarray(base).astype(np.int16)
    for i in range(count):
        noisy = np.clip(pixels + rng.integers(-4, 5, pixels.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noisy).save(buffer, "JPEG", quality=85 + i % 10)
        (folder / f"img{i:05d}.jpg").write_bytes(buffer.getvalue())


def decode_floor(folder: str, _db: str, _names=()) -> None:
    for path in iter_files([folder]):
        with open(path, "rb") as handle:
            Image.open(io.BytesIO(handle.read())).convert("RGB").load()


def stat_floor(folder: str, _db: str, _names=()) -> None:
    for path in iter_files([folder]):
        os.stat(path)


def scan(folder: str, db: str, detectors=()) -> None:
    Pipeline(Database(db), list(detectors), Settings()).scan(iter_files([folder]))


def scanner_default_set() -> list[str]:
    """The scanner's own default set: a plugin installed beside it (the test suite's example
    plugin in a development install, which reads the raw ELA difference) is not what a
    user's scan runs."""
    return [
        p.name
        for p in discover()
        if p.loaded and p.detector.enabled_by_default and p.package == "scanner"
    ]


def _tree_rss(pid: int) -> int:
    """Proportional resident bytes (PSS: a page shared by n processes counts 1/n in each) of
    a process and all its descendants (Linux /proc): what they cost the machine together."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/smaps_rollup") as handle:
                pss = next(line for line in handle if line.startswith("Pss:"))
                total += int(pss.split()[1]) * 1024
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    todo.extend(int(child) for child in handle.read().split())
        except (OSError, ValueError):
            continue
    return total


def _phase(fn, folder: str, db: str, names=()) -> tuple[float, int]:
    Database(db).close()  # imports, migrations and model loading are not what is measured
    detectors = [p.detector for p in discover(list(names))] if names else []
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], _tree_rss(os.getpid()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    fn(folder, db, detectors)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return seconds, max(own, peak[0])


def make_large(folder: Path) -> None:
    """Four 13000x13000 PNGs (a few hundred KB each: smooth) and 20 photos of 4000x3000."""
    side = 13000
    y = np.linspace(0, 255, side, dtype=np.float32)
    grey = Image.fromarray(np.add.outer(y, y).astype(np.uint8) // 2)
    for i in range(4):
        Image.merge("RGB", (grey, grey.rotate(90 * i), grey)).save(folder / f"large{i}.png")
    make_images(folder, 20, 4000)


def measure(fn, folder: str, db: str, names=()) -> tuple[float, int]:
    # A fresh process per phase (its own peak memory); not a daemon, so the scan in it can
    # start its worker processes.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(_phase, fn, folder, db, tuple(names)).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--detectors", action="store_true", help="also time each detector")
    parser.add_argument("--large", action="store_true", help="only the peak memory of large images")
    parser.add_argument(
        "--rescan", type=int, metavar="N", help="only a re-scan of N unchanged small files"
    )
    args = parser.parse_args()
    if args.large:
        return large()
    if args.rescan:
        return rescan_only(args.rescan)
    costs = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        make_images(folder, args.images, args.side)
        db, floor_db = f"sqlite:///{tmp}/bench.db", f"sqlite:///{tmp}/floor.db"
        measure(decode_floor, str(folder), floor_db)  # warm the page cache
        floor_s, floor_rss = measure(decode_floor, str(folder), floor_db)
        scan_s, scan_rss = measure(scan, str(folder), db)
        stat_s, _ = measure(stat_floor, str(folder), floor_db)
        rescan_s, _ = measure(scan, str(folder), db)
        installed = [p for p in discover() if p.loaded] if args.detectors else []
        for plugin in installed:
            db_one = f"sqlite:///{tmp}/{plugin.name}.db"
            costs[plugin.name] = measure(scan, str(folder), db_one, [plugin.name])[0]
        if installed:  # what `scanner scan` runs when no --detector is named
            default = [p.name for p in installed if p.detector.enabled_by_default]
            db_all = f"sqlite:///{tmp}/default.db"
            costs["the default set"] = measure(scan, str(folder), db_all, default)[0]

    n = args.images
    print(f"{n} JPEGs of {args.side}x{args.side * 3 // 4}, python {sys.version.split()[0]}")
    print(
        f"first scan / decode floor:       {scan_s / floor_s:6.2f}x  "
        f"({n / scan_s:.1f} vs {n / floor_s:.1f} images/s)"
    )
    print(
        f"re-scan unchanged / stat floor:  {rescan_s / stat_s:6.2f}x  "
        f"({rescan_s / n * 1000:.3f} s per 1000 files)"
    )
    print(
        f"peak memory scan / decode floor: {scan_rss / floor_rss:6.2f}x  "
        f"({scan_rss / 2**20:.0f} vs {floor_rss / 2**20:.0f} MiB)"
    )
    for name, seconds in costs.items():
        print(f"scan with {name:<22} / bare scan: {seconds / scan_s:6.2f}x")


def rescan_only(count: int) -> None:
    """A re-scan of `count` unchanged small files (scanned once before with the default
    detectors) against the stat floor, in files per second; each in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        for n in range(count):
            sub = folder / f"{n // 1000:03d}"
            sub.mkdir(parents=True, exist_ok=True)
            pixels = np.full((8, 8, 3), n % 251, dtype=np.uint8)
            pixels[0, 0] = (n // 251) % 256, n % 7, 0  # each file its own picture
            Image.fromarray(pixels).save(sub / f"img{n:06d}.png")
        db, floor_db = f"sqlite:///{tmp}/bench.db", f"sqlite:///{tmp}/floor.db"
        # The default set: each file then has the verdict rows a real re-scan must check.
        default = scanner_default_set()
        measure(scan, str(folder), db, default)
        stat_s, _ = measure(stat_floor, str(folder), floor_db)
        rescan_s, _ = measure(scan, str(folder), db, default)
    print(
        f"re-scan of {count} unchanged files, python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cores, detectors: {', '.join(default)}"
    )
    print(
        f"re-scan / stat floor: {rescan_s / stat_s:6.2f}x  "
        f"({count / rescan_s:.0f} vs {count / stat_s:.0f} files/s)"
    )


def large() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        make_large(folder)
        floor_s, floor_rss = measure(decode_floor, str(folder), f"sqlite:///{tmp}/floor.db")
        default = scanner_default_set()
        scan_s, scan_rss = measure(scan, str(folder), f"sqlite:///{tmp}/scan.db", default)
    print(f"4 PNGs of 13000x13000 and 20 JPEGs of 4000x3000, detectors: {', '.join(default)}")
    print(
        f"peak PSS scan / decode floor:    {scan_rss / floor_rss:6.2f}x  "
        f"({scan_rss / 2**20:.0f} vs {floor_rss / 2**20:.0f} MiB; {scan_s:.0f} vs {floor_s:.0f} s)"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
