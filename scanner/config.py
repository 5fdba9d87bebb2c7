"""Settings: flags override SCANNER_* environment variables, which override defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs


def default_db_path() -> Path:
    """scanner.db in the per-user data folder: $XDG_DATA_HOME/scanner (~/.local/share/scanner)
    on Linux, ~/Library/Application Support/scanner on macOS, %LOCALAPPDATA%\\scanner on
    Windows. Not the current folder: results should not depend on where a command ran."""
    return Path(platformdirs.user_data_dir("scanner", appauthor=False)) / "scanner.db"


def db_url(value: str | None = None) -> str:
    """The database URL: the flag, else SCANNER_DB, else the per-user default_db_path().

    A bare file path is accepted and turned into a SQLite URL.
    """
    url = value or os.environ.get("SCANNER_DB") or f"sqlite:///{default_db_path()}"
    if "://" not in url:
        url = f"sqlite:///{Path(url).expanduser()}"
    return url


def _env(name: str, default, cast, kind: str):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return cast(raw)
    except ValueError:
        raise ValueError(f"{name} must be {kind}, got {raw!r}") from None


def _env_int(name: str, default: int) -> int:
    return _env(name, default, int, "a whole number")


def _env_float(name: str, default: float) -> float:
    return _env(name, default, float, "a number")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the system has one (a scan
    started under `taskset` or in a cpuset container), else every core."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


DEFAULT_IMAGE_TIMEOUT = 30.0
DEFAULT_WORKER_MEMORY_MB = 4096
DEFAULT_PIXEL_BUDGET_MP = 100


@dataclass(frozen=True)
class Settings:
    """What the pipeline needs to know; every field has a SCANNER_* variable."""

    ela_quality: int = field(default_factory=lambda: _env_int("SCANNER_ELA_QUALITY", 90))
    # Longest side of the ELA PNG kept in the database (detectors see full resolution).
    ela_max_side: int = field(default_factory=lambda: _env_int("SCANNER_ELA_MAX_SIDE", 768))
    # Files larger than this are error rows, never read into memory.
    max_file_bytes: int = field(
        default_factory=lambda: _env_int("SCANNER_MAX_FILE_MB", 200) * 1024 * 1024
    )
    batch_size: int = field(default_factory=lambda: _env_int("SCANNER_BATCH_SIZE", 16))
    # Worker processes that decode images and run the detectors, one image each at a time
    # (scanner/workers.py). 0: everything in the scanning process, without the limits below.
    workers: int = field(default_factory=lambda: _env_int("SCANNER_WORKERS", usable_cores()))
    # Seconds one image may take, decoding and every detector together; over it, the worker is
    # killed and the image is an error row `timeout` (or the detector that hung is disabled).
    image_timeout: float = field(
        default_factory=lambda: _env_float("SCANNER_IMAGE_TIMEOUT", DEFAULT_IMAGE_TIMEOUT)
    )
    # Resident memory a worker may reach before it is killed (0: no cap).
    worker_memory_bytes: int = field(
        default_factory=lambda: (
            _env_int("SCANNER_WORKER_MEMORY_MB", DEFAULT_WORKER_MEMORY_MB) * 2**20
        )
    )
    # Pixels being worked on at once, all workers together; a larger image runs alone.
    pixel_budget: int = field(
        default_factory=lambda: (
            _env_int("SCANNER_PIXEL_BUDGET_MP", DEFAULT_PIXEL_BUDGET_MP) * 1_000_000
        )
    )
    # Every input is a face crop: face detectors score the whole image instead of finding faces.
    face_crops: bool = field(default_factory=lambda: _env_int("SCANNER_FACE_CROPS", 0) == 1)
    # Keep each image's ELA PNG in the database (the largest part of it: see the README).
    store_ela: bool = field(default_factory=lambda: _env_int("SCANNER_STORE_ELA", 1) == 1)
    # Store it as one grey channel (the largest of the three differences): a third of the size
    # of colour (measured in the README); --ela-colour keeps the three channels.
    ela_grey: bool = field(default_factory=lambda: _env_int("SCANNER_ELA_GREY", 1) == 1)

    def __post_init__(self) -> None:
        if not 1 <= self.ela_quality <= 100:
            raise ValueError(f"ELA quality must be 1-100, got {self.ela_quality}")
        if self.ela_max_side < 16:
            raise ValueError(f"ELA max side must be at least 16, got {self.ela_max_side}")
        if self.workers < 0:
            raise ValueError(f"workers must be 0 or more, got {self.workers}")
        if not self.image_timeout > 0:
            raise ValueError(f"the image timeout must be above 0 s, got {self.image_timeout}")
        if self.worker_memory_bytes < 0 or self.pixel_budget < 0:
            raise ValueError("the worker memory cap and the pixel budget cannot be negative")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {self.batch_size}")
