"""The metadata detector on files built here with known metadata, on hostile EXIF, and on real
CASIA images through a real scan."""

from __future__ import annotations

import io
import random
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import jpeg_bytes, photo
from PIL import ExifTags, Image, PngImagePlugin
from sqlalchemy import select

from scanner.config import Settings
from scanner.imaging import Sample, decode
from scanner.pipeline import Pipeline
from scanner.store import Database, tables
from scanner_plugins.metadata import Metadata, jpeg

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def detector():
    det = Metadata()
    det.load()
    return det


def judge(detector, data: bytes):
    rgb, fmt = decode(data)
    result = detector.predict([Sample("x", "0" * 64, data, rgb, fmt)])[0]
    assert result.problem() is None
    rules = {f["rule"] for f in (result.details or {}).get("findings", [])}
    return result, rules


def camera_exif(**extra) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "Canon EOS 5D"
    exif[0x0132] = extra.pop("modified", "2021:06:01 12:00:00")
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    sub[0x9003] = "2021:06:01 12:00:00"
    for tag, value in extra.items():
        {"software": exif, "width": sub, "height": sub}[tag][
            {"software": 0x0131, "width": 0xA002, "height": 0xA003}[tag]
        ] = value
    return exif


# A camera-like quantisation table: not a scaled libjpeg table, as with most cameras.
CAMERA_TABLES = [[2 + (i % 7) for i in range(64)], [3 + (i % 5) for i in range(64)]]


def test_a_camera_file_with_no_sign_of_change_is_judged_real(detector):
    data = jpeg_bytes(photo(1), qtables=CAMERA_TABLES, exif=camera_exif())
    result, rules = judge(detector, data)
    assert result.label == "real" and result.score == 0.0
    assert rules == {"jpeg-quality"}


def test_stripped_metadata_is_not_judged(detector):
    result, rules = judge(detector, jpeg_bytes(photo(2), 85))
    assert result.label == "not-applicable" and "no camera data" in result.reason
    assert "no-camera-data" in rules and "jpeg-quality" in rules


@pytest.mark.parametrize("software", ["Adobe Photoshop CS2 Windows", "GIMP 2.10.34"])
def test_a_retouching_program_is_flagged(detector, software):
    exif = camera_exif(software=software)
    result, rules = judge(detector, jpeg_bytes(photo(3), qtables=CAMERA_TABLES, exif=exif))
    assert result.label == "fake" and result.score == pytest.approx(0.4)
    assert "editing-software" in rules


def test_signs_add_up(detector):
    exif = camera_exif(software="Adobe Photoshop", modified="2021:06:03 09:00:00")
    exif.get_ifd(ExifTags.IFD.Exif).update({0xA002: 4000, 0xA003: 3000})
    result, rules = judge(detector, jpeg_bytes(photo(4), 90, exif=exif))
    expected = {"editing-software", "modified-after-capture", "exif-size-mismatch"}
    assert expected <= rules and "camera-with-software-tables" in rules
    assert result.score == pytest.approx(1 - 0.6 * 0.7 * 0.65 * 0.8)


def test_generator_marks_are_left_to_the_provenance_detector(detector):
    """One place for every provenance mark: plugins/provenance (tests/test_provenance.py)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a castle at dusk, Steps: 30, Sampler: Euler a")
    buffer = io.BytesIO()
    photo(5).save(buffer, "PNG", pnginfo=info)
    result, rules = judge(detector, buffer.getvalue())
    assert result.label == "not-applicable" and "generator-mark" not in rules


def exif_with_thumbnail(thumbnail: bytes, orientation: int = 1) -> bytes:
    """Raw EXIF (little-endian TIFF): IFD0 with Make and Orientation, IFD1 pointing at the
    thumbnail, which follows. Pillow cannot write IFD1, so it is laid out by hand."""
    ifd0 = struct.pack("<H", 2)
    ifd0 += struct.pack("<HHI4s", 0x010F, 2, 4, b"Cam\x00")
    ifd0 += struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    ifd1_at = 8 + len(ifd0) + 4
    ifd0 += struct.pack("<I", ifd1_at)
    thumb_at = ifd1_at + 2 + 2 * 12 + 4
    ifd1 = struct.pack("<H", 2)
    ifd1 += struct.pack("<HHII", 0x0201, 4, 1, thumb_at)
    ifd1 += struct.pack("<HHII", 0x0202, 4, 1, len(thumbnail))
    ifd1 += struct.pack("<I", 0)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd0 + ifd1 + thumbnail


def thumb_of(image: Image.Image) -> bytes:
    small = image.copy()
    small.thumbnail((160, 120))
    return jpeg_bytes(small, 80)


KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_lossless" / "real"


@pytest.mark.skipif(not KODAK.is_dir(), reason=f"needs {KODAK}")
def test_a_thumbnail_of_another_picture_is_a_mismatch(detector):
    # Real photos: the synthetic ones are all smooth waves, alike enough at 16x16 in some turn.
    original = Image.open(KODAK / "kodim05.png").convert("RGB")
    edited = Image.open(KODAK / "kodim23.png").convert("RGB")
    same = jpeg_bytes(original, 90, exif=exif_with_thumbnail(thumb_of(original)))
    result, rules = judge(detector, same)
    assert "thumbnail-mismatch" not in rules and result.label == "real"

    changed = jpeg_bytes(edited, 90, exif=exif_with_thumbnail(thumb_of(original)))
    result, rules = judge(detector, changed)
    assert "thumbnail-mismatch" in rules and result.label == "fake"


@pytest.mark.skipif(not KODAK.is_dir(), reason=f"needs {KODAK}")
def test_a_large_letterboxed_photo_is_compared_with_its_thumbnail_on_a_reduced_copy(detector):
    # 3072x2304 with black bars: the picture is box-reduced before the 16x16 comparison
    # (rules._comparable), and the bars are still cut from both sides.
    def letterboxed(name: str) -> Image.Image:
        frame = Image.new("RGB", (3072, 2304))
        frame.paste(Image.open(KODAK / name).convert("RGB").resize((3072, 2048)), (0, 128))
        return frame

    original, other = letterboxed("kodim05.png"), letterboxed("kodim23.png")
    result, rules = judge(
        detector, jpeg_bytes(original, 90, exif=exif_with_thumbnail(thumb_of(original)))
    )
    assert "thumbnail-mismatch" not in rules and result.label == "real"
    result, rules = judge(
        detector, jpeg_bytes(other, 90, exif=exif_with_thumbnail(thumb_of(original)))
    )
    assert "thumbnail-mismatch" in rules and result.label == "fake"


@pytest.mark.skipif(not KODAK.is_dir(), reason=f"needs {KODAK}")
def test_a_real_photo_mirrored_by_a_viewer_still_matches_its_thumbnail(detector):
    # A real photo, unlike the synthetic waves below, matches its mirror image in no turn:
    # only comparing in the left-right mirror (Image.Transpose value 0) keeps it unflagged.
    original = Image.open(KODAK / "kodim05.png").convert("RGB")
    thumbnail = exif_with_thumbnail(thumb_of(original))
    mirrored = original.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    result, rules = judge(detector, jpeg_bytes(mirrored, 90, exif=thumbnail))
    assert "thumbnail-mismatch" not in rules and result.label == "real"


def test_a_picture_turned_or_mirrored_by_a_viewer_still_matches_its_thumbnail(detector):
    original = photo(7)
    for turn in (Image.Transpose.ROTATE_90, Image.Transpose.FLIP_LEFT_RIGHT):
        turned = jpeg_bytes(
            original.transpose(turn), 90, exif=exif_with_thumbnail(thumb_of(original))
        )
        assert "thumbnail-mismatch" not in judge(detector, turned)[1]


def test_the_thumbnail_is_turned_like_the_image(detector):
    # Stored sideways with Orientation 6: the decoded image is turned upright, and so must be
    # the thumbnail before they are compared.
    upright = photo(9)
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    data = jpeg_bytes(stored, 90, exif=exif_with_thumbnail(thumb_of(stored), orientation=6))
    result, rules = judge(detector, data)
    assert "thumbnail-mismatch" not in rules, result.details


def texture(seed: int) -> Image.Image:
    """Busy, noisy content, shrunk so that no earlier JPEG grid survives."""
    rng = np.random.default_rng(seed)
    big = photo(seed, (640, 480))
    noisy = np.asarray(big, dtype=np.float32) + rng.normal(0, 12, (480, 640, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).reduce(2)


@pytest.mark.parametrize("quality", [50, 75, 90, 95])
def test_quality_is_read_from_standard_tables(quality):
    with Image.open(io.BytesIO(jpeg_bytes(photo(1), quality))) as image:
        assert jpeg.estimate_quality(image.quantization) == (quality, True)


def test_double_compression_is_told_from_a_single_save():
    def share(data):
        return jpeg.double_quantisation(jpeg.luma_coefficients(data))

    for seed in range(3):
        image = texture(seed)
        once = share(jpeg_bytes(image, 90))
        twice = share(jpeg_bytes(Image.open(io.BytesIO(jpeg_bytes(image, 60))), 90))
        assert once < 0.25 <= twice, (once, twice)


# decode() lets Pillow warn about the broken tags; the detector turns them into findings.
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_hostile_exif_never_crashes(detector):
    base = jpeg_bytes(photo(10), 90, exif=exif_with_thumbnail(thumb_of(photo(11))))
    app1 = base.index(b"Exif\x00\x00")
    rng = random.Random(0)
    judged = 0
    for _ in range(300):
        data = bytearray(base)
        for _ in range(rng.randint(1, 12)):
            data[app1 + rng.randrange(6, 200)] = rng.randrange(256)
        try:
            decode(bytes(data))
        except Exception:  # noqa: BLE001 - the scan makes these error rows before detectors
            continue
        judge(detector, bytes(data))  # asserts a sound Result
        judged += 1
    assert judged > 250


def test_casia_tampered_files_carry_photoshop_and_are_flagged_in_a_scan(detector, tmp_path):
    if not DATA.is_dir():
        pytest.skip(f"needs the shared data at {DATA}")
    tampered = sorted((DATA / "casia1" / "tampered").glob("Sp_D_*.jpg"))[0]
    face = sorted((DATA / "faces_stylegan2" / "fake").glob("*.jpg"))[0]
    db = Database(f"sqlite:///{tmp_path / 'meta.db'}")
    Pipeline(db, [detector], Settings()).scan([str(tampered), str(face)])
    with db.read() as conn:
        rows = {r.label: r for r in conn.execute(select(tables.verdicts))}
    assert set(rows) == {"fake", "not-applicable"}
    assert "Photoshop" in rows["fake"].details and rows["fake"].score >= 0.4
