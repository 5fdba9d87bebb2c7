"""Detectors that tests register through entry points. They look at trivial properties of an
image (how red it is) so that tests know the right answer; none of them detects forgery."""

from __future__ import annotations

import os
import tempfile
from typing import ClassVar

import numpy as np

from scanner.detectors import Detector, Result


class ScoredLog:
    """The sha256 of every sample a detector scored, in a file: detectors run in worker
    processes, whose memory the test cannot see. The file is named in the environment by the
    first process that imports this module; the workers, started later, inherit the name."""

    def __init__(self):
        if "SCANNER_TEST_SCORED_LOG" not in os.environ:
            handle, path = tempfile.mkstemp(prefix="scanner-scored-", suffix=".txt")
            os.close(handle)
            os.environ["SCANNER_TEST_SCORED_LOG"] = path
        self.path = os.environ["SCANNER_TEST_SCORED_LOG"]

    def append(self, sha: str) -> None:
        with open(self.path, "a") as log:  # one short line per write: appends do not interleave
            log.write(sha + "\n")

    def _lines(self) -> list[str]:
        with open(self.path) as log:
            return log.read().split()

    def clear(self) -> None:
        open(self.path, "w").close()

    def __len__(self) -> int:
        return len(self._lines())

    def __iter__(self):
        return iter(self._lines())


class Redness(Detector):
    """P(fake) := how red the picture is. A pure red image is 'fake', photos are 'real'."""

    name = "test-red"
    version = "1"
    needs = frozenset({"rgb"})
    threshold = 0.6
    scored: ClassVar[ScoredLog] = ScoredLog()  # sha256 of every sample scored, in order

    def predict(self, batch):
        out = []
        for sample in batch:
            Redness.scored.append(sample.sha256)
            mean = np.asarray(sample.rgb, dtype=np.float32).mean(axis=(0, 1)) / 255
            out.append(Result.from_score(float(mean[0] * (1 - mean[1])), self.threshold))
        return out


class RednessV2(Redness):
    version = "2"


class ThreadPools(Detector):
    """Always 'real'; its details say how many threads the process's pools hold where it runs
    (OpenCV's and numpy's BLAS), to check that each worker keeps to its share of the cores."""

    name = "test-thread-pools"
    version = "1"

    def predict(self, batch):
        import cv2
        from threadpoolctl import threadpool_info

        blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
        pools = {"opencv": cv2.getNumThreads(), "blas": blas, "pid": os.getpid()}
        return [Result.from_score(0.0, self.threshold, details=pools) for _ in batch]


class NeedsBigImages(Detector):
    """Not applicable below 100 pixels; otherwise always 'real' with score 0.1."""

    name = "test-big"
    version = "1"
    needs = frozenset({"ela"})

    def predict(self, batch):
        return [
            Result.not_applicable("smaller than 100 pixels")
            if min(s.size) < 100
            else Result.from_score(0.1, self.threshold, details={"ela_max": s.ela_max_diff()})
            for s in batch
        ]


class Explodes(Detector):
    name = "test-explodes"
    version = "1"

    def predict(self, batch):
        raise RuntimeError("model exploded")


class OutOfRange(Detector):
    name = "test-out-of-range"
    version = "1"

    def predict(self, batch):
        return [Result(label="fake", score=1.5) for _ in batch]


class FailsToLoad(Detector):
    name = "test-fails-to-load"
    version = "1"

    def load(self):
        raise FileNotFoundError("weights file model.onnx is missing")

    def predict(self, batch):  # pragma: no cover - never reached
        return []


class WrongName(Redness):
    name = "not-the-entry-point-name"


class UnknownNeeds(Redness):
    name = "test-unknown-needs"
    needs = frozenset({"hologram"})


class NotADetector:
    name = "test-not-a-detector"


class OffByDefault(Redness):
    """Runs only when named with --detector."""

    name = "test-off"
    enabled_by_default = False


class OffAndBroken(FailsToLoad):
    """Off by default, and its model is missing: a scan of the default set must not read it."""

    name = "test-off-broken"
    enabled_by_default = False


class Alarm(Detector):
    """Off by default, and labels every image fake: the detector whose stored verdicts must not
    change the overall verdict unless it is named."""

    name = "test-alarm"
    version = "1"
    enabled_by_default = False

    def predict(self, batch):
        return [Result.from_score(0.9, self.threshold) for _ in batch]


class BadOutputs(Detector):
    """Breaks the contract a different way for each image, by its size: a reason that is not
    text, details that are not JSON, a heatmap that is not 2-D, and one sound result."""

    name = "test-bad-outputs"
    version = "1"
    batch_size = 0  # nonsense: must still score every image

    def predict(self, batch):
        out = []
        for i, _sample in enumerate(batch):
            kind = i % 4
            if kind == 0:
                out.append(Result(label="real", score=0.1, reason={"not": "text"}))
            elif kind == 1:
                out.append(Result(label="real", score=0.1, details={"x": object()}))
            elif kind == 2:
                out.append(Result(label="real", score=0.1, heatmap=np.zeros((2, 2, 2, 2))))
            else:
                out.append(Result(label="real", score=0.1))
        return out


class Exits(Detector):
    name = "test-exits"
    version = "1"

    def predict(self, batch):
        raise SystemExit(3)


class Hangs(Detector):
    """predict() never returns (a model stuck in a loop, a lock never released)."""

    name = "test-hangs"
    version = "1"

    def predict(self, batch):
        import time

        while True:
            time.sleep(1)


class Allocates(Detector):
    """predict() touches 6 GiB, one page at a time."""

    name = "test-allocates"
    version = "1"

    def predict(self, batch):
        memory = np.ones(6 * 2**30, dtype=np.uint8)
        return [Result.from_score(float(memory[0]) / 2, self.threshold) for _ in batch]


class LoadHangs(Redness):
    """load() never returns."""

    name = "test-load-hangs"

    def load(self):
        import time

        while True:
            time.sleep(1)
