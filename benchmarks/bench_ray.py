"""Issue 16's throughput figures: `scanner scan --engine ray` with 1, 2 and 4 local Ray CPUs
against the plain engine (worker processes, one per core), as ratios measured in one run, with
pictures decoded in the detector actors (the default) and in Ray tasks (`--ray-decode tasks`).

    pip install -e '.[ray]'
    python benchmarks/bench_ray.py [--small 96] [--large 4]

The mix is bench_targets.py's (CASIA-size photo-like JPEGs and 12-megapixel ones, generated,
never committed); every scan runs the default detector set in a fresh process into a fresh
database. Start-up (the detectors, and for Ray a local Ray instance) is timed on an empty
folder and subtracted, and reported on its own. Noisy machines: compare the ratios, run twice.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from bench_targets import make_mix, scan  # noqa: E402

from scanner.detectors import discover  # noqa: E402

WHERE = {"actors": "", "tasks": ", decode in tasks"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=96)
    parser.add_argument("--large", type=int, default=4)
    args = parser.parse_args()
    import ray

    cores = os.cpu_count() or 1
    detectors = [p.name for p in discover() if p.loaded and p.detector.enabled_by_default]
    print(f"{cores} cores, Python {platform.python_version()}, Ray {ray.__version__}")
    print(f"default detectors: {', '.join(detectors)}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "mix"
        n = len(make_mix(folder, args.small, args.large))
        print(f"{n} images: {args.small} of 384x256, {args.large} of 4000x3000\n")
        runs = [("plain engine", ())] + [
            (
                f"ray, {c} CPU{'s' if c > 1 else ''}" + WHERE[decode],
                ("--engine", "ray", "--ray-cpus", str(c), "--ray-decode", decode),
            )
            for decode in ("actors", "tasks")
            for c in (1, 2, 4)
        ]
        rates = {}
        for label, extra in runs:
            started = time.perf_counter()
            seconds, _ = scan(folder, cores, detectors, extra)
            wall = time.perf_counter() - started
            rates[label] = n / seconds
            print(
                f"{label:30s} {rates[label]:6.1f} images/s "
                f"({rates[label] / rates['plain engine']:.2f}x the plain engine; "
                f"both scans with start-up {wall:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
