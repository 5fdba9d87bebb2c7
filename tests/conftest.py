"""Fixtures: images made with Pillow, real SQLite files, and detectors registered as real entry
points (a dist-info folder on sys.path) for the length of one test."""

from __future__ import annotations

import importlib
import io
import os
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))  # sample_detectors.py holds the detectors tests register


def photo(seed: int, size=(320, 240)) -> Image.Image:
    """A smooth, photo-like RGB picture: gradients, shapes, mild noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack(
        [
            128 + 100 * np.sin(x / (25 + 10 * rng.random()) + rng.random() * 6),
            128 + 100 * np.cos(y / (30 + 10 * rng.random())),
            128 + 60 * np.sin((x + y) / 40),
        ],
        axis=-1,
    )
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.integers(0, w - 40), rng.integers(0, h - 40)
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.ellipse([x0, y0, x0 + rng.integers(20, 80), y0 + rng.integers(20, 80)], fill=color)
    image = image.filter(ImageFilter.GaussianBlur(1.2))
    noise = rng.normal(0, 3, (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))


def jpeg_bytes(image: Image.Image, quality: int = 90, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, **kw)
    return buffer.getvalue()


def spliced(seed: int) -> bytes:
    """A JPEG with a region pasted from another photo that had been compressed differently."""
    host = Image.open(io.BytesIO(jpeg_bytes(photo(seed), 95)))
    donor = Image.open(io.BytesIO(jpeg_bytes(photo(seed + 1000), 60)))
    host.paste(donor.crop((40, 40, 160, 140)), (150, 80))
    return jpeg_bytes(host, 90)


def decompression_bomb() -> bytes:
    """A small PNG whose pixel count is over Pillow's error limit (2 x MAX_IMAGE_PIXELS)."""
    side = int((2 * Image.MAX_IMAGE_PIXELS) ** 0.5) + 100
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def bomb_bytes() -> bytes:
    return decompression_bomb()


@pytest.fixture
def image_dir(tmp_path, bomb_bytes) -> Path:
    """A folder with every kind of input a scan meets; see EXPECTED for what each should become."""
    root = tmp_path / "pictures"
    (root / "sub").mkdir(parents=True)
    for i in range(4):
        (root / f"clean{i}.jpg").write_bytes(jpeg_bytes(photo(i), 85))
    (root / "sub" / "spliced.jpg").write_bytes(spliced(7))
    photo(8).save(root / "sub" / "graphic.png")
    (root / "red.jpg").write_bytes(jpeg_bytes(Image.new("RGB", (64, 64), (250, 10, 10))))
    shutil.copy(root / "clean0.jpg", root / "sub" / "clean0-copy.jpg")
    whole = jpeg_bytes(photo(9), 85)
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(2000))
    (root / "renamed-text.jpg").write_text("this is not a picture")
    (root / "bomb.png").write_bytes(bomb_bytes)
    (root / "notes.txt").write_text("shopping list")
    (root / "broken-link.jpg").symlink_to(root / "does-not-exist.jpg")
    return root


# What a scan of image_dir must record: path -> "ok" or the error kind. notes.txt is skipped.
EXPECTED = {
    "clean0.jpg": "ok",
    "clean1.jpg": "ok",
    "clean2.jpg": "ok",
    "clean3.jpg": "ok",
    "red.jpg": "ok",
    "sub/spliced.jpg": "ok",
    "sub/graphic.png": "ok",
    "sub/clean0-copy.jpg": "ok",
    "truncated.jpg": "truncated",
    "corrupt.jpg": "corrupt",
    "renamed-text.jpg": "corrupt",
    "bomb.png": "decompression-bomb",
    "broken-link.jpg": "broken-link",
}


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'scanner.db'}"


class Registry:
    """Writes a dist-info folder whose entry_points.txt registers detectors, like pip would."""

    def __init__(self, root: Path):
        self.root = root
        self.entries: dict[str, str] = {}
        self.dist = root / "scanner_test_plugins-0.0.1.dist-info"
        self.dist.mkdir(parents=True)
        (self.dist / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: scanner-test-plugins\nVersion: 0.0.1\n"
        )

    def add(self, name: str, target: str) -> None:
        self.entries[name] = target
        lines = "".join(f"{n} = {t}\n" for n, t in self.entries.items())
        (self.dist / "entry_points.txt").write_text(f"[scanner.detectors]\n{lines}")

    def add_module(self, name: str, source: str) -> None:
        (self.root / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()

    @property
    def pythonpath(self) -> str:
        """For a subprocess: this registry and the tests folder."""
        parts = [str(self.root), str(TESTS), os.environ.get("PYTHONPATH", "")]
        return os.pathsep.join(p for p in parts if p)


@pytest.fixture
def registry(tmp_path, monkeypatch) -> Registry:
    """Register detectors for one test; they are gone when it ends."""
    reg = Registry(tmp_path / "site")
    monkeypatch.syspath_prepend(str(reg.root))
    return reg
