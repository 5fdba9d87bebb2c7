"""What a scan did with each path it was given (FileOutcome) and with all of them (ScanStats):
plain records that the pipeline fills and the CLI, the watch daemon and the logs read."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class FileOutcome:
    """What became of one path: outcome is a ScanStats counter name (scanned, errors, ...)."""

    path: str
    outcome: str
    detail: str = ""
    sha256: str | None = None


@dataclass
class ScanStats:
    """What a scan did with every path it was given."""

    scanned: int = 0  # decoded and scored
    unchanged: int = 0  # same size and mtime as last time, nothing new to run: not read
    duplicates: int = 0  # read, but these bytes were already scanned (another path, or touched)
    not_images: int = 0  # not an image (no signature, no image name), or a folder link: skipped
    errors: int = 0  # the file could not be scanned: an error row says why
    detector_errors: int = 0  # a detector failed on an image: an error row names it
    flagged: Counter = field(default_factory=Counter)  # detector -> images it labelled fake
    skipped: Counter = field(default_factory=Counter)  # what the not_images were: text, video...
    seconds: float = 0.0

    @property
    def seen(self) -> int:
        return self.scanned + self.unchanged + self.duplicates + self.not_images + self.errors

    COUNTERS = ("scanned", "unchanged", "duplicates", "not_images", "errors", "detector_errors")

    def add(self, other: ScanStats) -> None:
        for name in (*self.COUNTERS, "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.flagged.update(other.flagged)
        self.skipped.update(other.skipped)

    def as_dict(self) -> dict:
        counts = {name: getattr(self, name) for name in self.COUNTERS}
        return {
            "seen": self.seen,
            **counts,
            "seconds": self.seconds,
            "flagged": dict(self.flagged),
            "skipped": dict(self.skipped),
        }
