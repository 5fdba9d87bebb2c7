"""The detector contract and entry-point discovery (group `scanner.detectors`).

A plugin package declares, in its pyproject.toml:

    [project.entry-points."scanner.detectors"]
    my-detector = "my_package:MyDetector"

and `MyDetector` subclasses `Detector`. Built-in detectors are registered the same way.
"""

from __future__ import annotations

import abc
import json
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar

import numpy as np

from scanner.config import Settings
from scanner.imaging import Sample

GROUP = "scanner.detectors"
# The views a Sample offers; a detector names the ones it reads in `needs`.
VIEWS = frozenset({"rgb", "ela", "bytes", "faces"})
LABELS = ("fake", "real", "not-applicable")


@dataclass(frozen=True)
class Result:
    """One detector's verdict on one image. `score` is the probability that the image is fake."""

    label: str
    score: float | None = None
    reason: str | None = None
    details: dict[str, Any] | None = None
    heatmap: np.ndarray | None = field(default=None, compare=False)

    @classmethod
    def from_score(cls, score: float, threshold: float, **extra: Any) -> Result:
        """A fake/real verdict: fake when score >= threshold."""
        score = float(score)
        return cls(label="fake" if score >= threshold else "real", score=score, **extra)

    @classmethod
    def not_applicable(cls, reason: str, **extra: Any) -> Result:
        return cls(label="not-applicable", reason=reason, **extra)

    def problem(self) -> str | None:
        """Why this result breaks the contract, or None when it is sound."""
        if not isinstance(self.label, str) or self.label not in LABELS:
            return f"label {self.label!r} is not one of {', '.join(LABELS)}"
        if self.reason is not None and not isinstance(self.reason, str):
            return f"reason is a {type(self.reason).__name__}, not text"
        if self.details is not None:
            if not isinstance(self.details, dict):
                return f"details is a {type(self.details).__name__}, not a dict"
            try:
                json.dumps(self.details, allow_nan=False)
            except (TypeError, ValueError) as exc:
                return f"details cannot be stored as JSON: {exc}"
        if self.label == "not-applicable":
            return None if self.reason else "a not-applicable result needs a reason"
        if (
            not isinstance(self.score, (int, float))
            or isinstance(self.score, bool)
            or not math.isfinite(self.score)
            or not 0 <= self.score <= 1
        ):
            return f"score {self.score!r} is not a probability in [0, 1]"
        return None


class Detector(abc.ABC):
    """Base class for every detector.

    Set `name` (stable: results are stored under it), `version` (bump it whenever scores can
    change, so old results can be told from new ones), `needs` (a subset of VIEWS) and
    `threshold` (score at or above which the label is `fake`). `load()` runs once per process
    before the first batch; `predict()` scores a batch and returns one Result per Sample, in order.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    needs: ClassVar[frozenset[str]] = frozenset({"rgb"})
    threshold: ClassVar[float] = 0.5
    description: ClassVar[str] = ""
    batch_size: ClassVar[int] = 16
    # False for a detector too weak to run unasked (its model card says why): it then runs only
    # when named with --detector. None of its verdicts is lost: it simply is not run.
    enabled_by_default: ClassVar[bool] = True
    # The scan settings (fields of scanner.config.Settings) whose value changes what this
    # detector sees. None: derived from `needs` (faces -> face_crops, ela -> ela_quality). A
    # detector that computes its own ELA at a fixed quality sets frozenset().
    uses_settings: ClassVar[frozenset[str] | None] = None

    def load(self) -> None:  # noqa: B027 - optional hook; most detectors load a model here
        """Load models or other resources. Raise to mark the detector as failed."""

    @property
    def model_hash(self) -> str | None:
        """SHA-256 of the model file this instance uses, if it has one."""
        return None

    def options(self) -> dict[str, Any]:
        """The detector's own options that change its scores (read from the environment, say).
        Recorded with every verdict; a change re-runs the detector."""
        return {}

    def settings(self, scan: Any) -> dict[str, Any]:
        """What a verdict depends on besides the version: the scan settings it uses (`scan` is
        a scanner.config.Settings) and its options(). Stored with each verdict."""
        used = self.uses_settings
        if used is None:
            used = {"face_crops"} if "faces" in self.needs else set()
            used |= {"ela_quality"} if "ela" in self.needs else set()
        return {name: getattr(scan, name) for name in sorted(used)} | self.options()

    @abc.abstractmethod
    def predict(self, batch: Sequence[Sample]) -> list[Result]:
        """One Result per sample, in the same order."""


@dataclass
class Plugin:
    """An installed detector as `scanner detectors` reports it: loaded, or failed and why."""

    name: str
    package: str
    package_version: str
    entry_point: str
    detector: Detector | None = None
    error: str | None = None
    # Off by default and not loaded, as discover(default_set=True) leaves such detectors.
    off_by_default: bool = False

    @property
    def loaded(self) -> bool:
        return self.detector is not None

    def describe(self) -> dict[str, Any]:
        det = self.detector
        return {
            "name": self.name,
            "status": "loaded" if det else "failed",
            "version": det.version if det else None,
            "threshold": det.threshold if det else None,
            "default": ("on" if det.enabled_by_default else "off") if det else None,
            "needs": sorted(det.needs) if det else None,
            "model_hash": det.model_hash if det else None,
            "package": f"{self.package} {self.package_version}".strip(),
            "entry_point": self.entry_point,
            "error": self.error,
        }


def _instantiate(ep: EntryPoint, default_set: bool = False) -> Detector | None:
    """The entry point's detector, checked and loaded; None, unloaded, when `default_set` asks
    only for detectors on by default and this one is off."""
    target = ep.load()
    detector = target() if callable(target) and not isinstance(target, Detector) else target
    if not isinstance(detector, Detector):
        raise TypeError(f"{ep.value} is not a scanner.detectors.Detector")
    for attr in ("name", "version"):
        if not isinstance(getattr(detector, attr, None), str):
            raise TypeError(f"{ep.value} has no string `{attr}`")
    if detector.name != ep.name:
        raise ValueError(f"entry point {ep.name!r} names a detector called {detector.name!r}")
    unknown = set(detector.needs) - VIEWS
    if unknown:
        raise ValueError(f"needs unknown views {sorted(unknown)}; known: {sorted(VIEWS)}")
    if default_set and not detector.enabled_by_default:
        return None
    _load_within(detector, float(os.environ.get("SCANNER_LOAD_TIMEOUT") or 60))
    # Its settings are stored as JSON with every verdict: check them once, here.
    settings = detector.settings(Settings())
    if not isinstance(settings, dict):
        raise TypeError(f"settings() returned {type(settings).__name__}, not a dict")
    json.dumps(settings, sort_keys=True)
    return detector


def _load_within(detector: Detector, seconds: float) -> None:
    """detector.load(), given up on after `seconds`: a load that hangs (a lock, a network
    mount) must not hang `scanner detectors`, a scan or the daemon. Its thread is left behind,
    a daemon thread that dies with the process; the detector is reported as failed."""
    failure: list[BaseException] = []

    def load() -> None:
        try:
            detector.load()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=load, name=f"load {detector.name}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"load() did not finish within {seconds:g} s (SCANNER_LOAD_TIMEOUT)")
    if failure:
        raise failure[0]


def installed_names() -> set[str]:
    """The names of the installed detectors, without importing or loading any of them."""
    return {ep.name for ep in entry_points(group=GROUP)}


def discover(only: Sequence[str] | None = None, default_set: bool = False) -> list[Plugin]:
    """Every detector registered under GROUP, loaded; a broken one is returned with its error.

    `only` limits loading to those names (the others are not imported at all).
    `default_set`: a detector off by default is imported (its class says so) but not loaded,
    and returned with `off_by_default` set and no detector. A scan of the default set had
    read and hashed every installed model only to drop most of them: with the built-ins,
    discovery took 131-160 ms and 80 MiB of the scan's main process, 83-88 ms and 40 MiB now
    (2026-12-07; importing the plugins is the rest).
    """
    plugins: list[Plugin] = []
    seen: dict[str, str] = {}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        if only is not None and ep.name not in only:
            continue
        dist = ep.dist
        plugin = Plugin(
            name=ep.name,
            package=dist.name if dist else "?",
            package_version=dist.version if dist else "",
            entry_point=ep.value,
        )
        if ep.name in seen:
            plugin.error = f"name already provided by {seen[ep.name]}"
        else:
            seen[ep.name] = plugin.package
            try:
                plugin.detector = _instantiate(ep, default_set)
                plugin.off_by_default = plugin.detector is None
            except Exception as exc:  # noqa: BLE001 - any plugin bug is reported, never fatal
                # One line: it is shown in a table and in a warning.
                plugin.error = " ".join(f"{type(exc).__name__}: {exc}".split())
        plugins.append(plugin)
    return plugins
