"""The metadata rules. Each rule looks at one kind of evidence in the file (EXIF, XMP, PNG text,
the EXIF thumbnail, the JPEG tables and coefficients) and, when it fires, returns a Finding with
a weight: our estimate of how likely an image showing that sign alone is manipulated or
generated. Weights are judgement, documented in MODEL_CARD.md with what each rule can and cannot
tell; they are not fitted to any data set (the ones we have carry almost no metadata).

Every rule reads attacker-controlled bytes, so each runs inside its own guard: a rule that
fails on malformed metadata becomes an `unreadable-metadata` finding, never an exception."""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

import numpy as np
from PIL import ExifTags, Image

from scanner_plugins.metadata import jpeg

# Tag numbers (EXIF 2.3): IFD0 and the Exif sub-IFD.
MAKE, MODEL, SOFTWARE, DATETIME, ORIENTATION = 0x010F, 0x0110, 0x0131, 0x0132, 0x0112
DATETIME_ORIGINAL, EXIF_WIDTH, EXIF_HEIGHT = 0x9003, 0xA002, 0xA003
THUMB_OFFSET, THUMB_LENGTH = 0x0201, 0x0202

# Programs made for changing what a picture shows. Matched case-insensitively as substrings of
# EXIF Software, XMP CreatorTool / softwareAgent and PNG Software.
RETOUCHING = (
    "photoshop", "gimp", "affinity photo", "pixelmator", "paint.net", "paintshop", "facetune",
    "picsart", "snapseed", "meitu", "faceapp", "airbrush", "canva", "photopea", "luminar",
    "photodirector", "fotor", "pixlr", "befunky", "remini",
)  # fmt: skip
# Programs that develop or export photos: a sign of processing, not of changed content.
DEVELOPING = (
    "lightroom", "camera raw", "capture one", "darktable", "rawtherapee", "acd systems",
    "acdsee", "dxo", "aperture", "picasa", "photos", "irfanview", "xnview", "imagemagick",
)  # fmt: skip
XMP_TOOLS = re.compile(rb"(?:CreatorTool|softwareAgent)(?:>|=\")\s*([^<\"]{1,200})", re.IGNORECASE)
MAX_XMP = 1 << 20  # bytes of XMP searched; more is itself suspicious, and costly
MAX_THUMBNAIL = 1 << 20


@dataclass(frozen=True)
class Finding:
    rule: str
    weight: float  # 0 for findings that inform but are not evidence
    message: str


@dataclass
class Evidence:
    """What the rules read from one file, parsed once."""

    data: bytes
    image: Image.Image  # opened, not decoded: metadata only
    rgb: Image.Image  # the decoded, orientation-corrected image the scan works on
    exif: Image.Exif = field(init=False)
    xmp: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.exif = self.image.getexif()
        xmp = self.image.info.get("xmp") or self.image.info.get("XML:com.adobe.xmp") or b""
        self.xmp = (xmp.encode("utf-8", "replace") if isinstance(xmp, str) else xmp)[:MAX_XMP]

    @cached_property
    def quality(self) -> tuple[int, bool]:
        """(estimated JPEG quality, tables are libjpeg's standard ones); JPEG files only."""
        return jpeg.estimate_quality(self.image.quantization)

    def text(self, tag: int, ifd: int | None = None) -> str:
        value = (self.exif.get_ifd(ifd) if ifd else self.exif).get(tag)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return str(value).strip("\x00 ").strip() if value is not None else ""

    def software(self) -> list[str]:
        """Every program the file names as its maker or editor."""
        names = [self.text(SOFTWARE), str(self.image.info.get("Software", ""))]
        names += [m.decode("utf-8", "replace") for m in XMP_TOOLS.findall(self.xmp)]
        return [n.strip() for n in names if n.strip()]


def _matches(names: list[str], vocabulary: tuple[str, ...]) -> list[str]:
    return [n for n in names if any(word in n.lower() for word in vocabulary)]


def editing_software(ev: Evidence) -> Iterator[Finding]:
    names = ev.software()
    retouched = _matches(names, RETOUCHING)
    if retouched:
        yield Finding("editing-software", 0.4, f"saved by a retouching program: {retouched[0]!r}")
    elif developed := _matches(names, DEVELOPING):
        yield Finding("developing-software", 0.1, f"processed by {developed[0]!r}")


def _timestamp(text: str) -> datetime | None:
    try:
        return datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None


def camera_data(ev: Evidence) -> Iterator[Finding]:
    exif_ifd = ExifTags.IFD.Exif
    make, model = ev.text(MAKE), ev.text(MODEL)
    if not make and not model:
        # Most images on the web have had their EXIF stripped, so absence is not evidence.
        yield Finding("no-camera-data", 0.0, "no camera make or model in the metadata")
    elif ev.image.format == "JPEG":
        quality, standard = ev.quality
        if standard:
            yield Finding(
                "camera-with-software-tables",
                0.2,
                f"EXIF names a camera ({make} {model}) but the JPEG tables are libjpeg's "
                f"standard ones at quality {quality}: re-saved by software",
            )
    modified = _timestamp(ev.text(DATETIME))
    original = _timestamp(ev.text(DATETIME_ORIGINAL, exif_ifd))
    if modified and original and (modified - original).total_seconds() > 60:
        yield Finding(
            "modified-after-capture",
            0.3,
            f"modified {modified:%Y-%m-%d %H:%M:%S}, taken {original:%Y-%m-%d %H:%M:%S}",
        )
    sub_ifd = ev.exif.get_ifd(exif_ifd)
    stated = (sub_ifd.get(EXIF_WIDTH), sub_ifd.get(EXIF_HEIGHT))
    actual = ev.image.size
    if all(isinstance(v, int) and v > 0 for v in stated) and stated not in (actual, actual[::-1]):
        yield Finding(
            "exif-size-mismatch",
            0.35,
            f"EXIF says {stated[0]}x{stated[1]}, the image is {actual[0]}x{actual[1]}: "
            "resized or cropped after the metadata was written",
        )


# The thumbnail and the picture are compared at this size: coarse enough that a camera's
# thumbnail of a slightly other framing or aspect still matches (at 24x24, three genuine
# camera photos of 68 fell to 0.76-0.78), fine enough that another picture does not.
COMPARE_SIDE = 16
# A thumbnail that matches the picture this little shows another picture. Camera photos:
# lowest 0.82 (camera_photos, all 68, compared in any of the 8 turns and mirrors; before
# 2026-12-07 the left-right mirror, Transpose value 0, was skipped as falsy, and one photo a
# viewer had mirrored fell to 0.42).
THUMBNAIL_MATCH = 0.6
# Turns and mirrors: a viewer that turned or flipped the whole picture without redrawing the
# thumbnail changed nothing the picture shows.
TURNS = (None, *(getattr(Image.Transpose, name) for name in (
    "ROTATE_90", "ROTATE_180", "ROTATE_270", "FLIP_LEFT_RIGHT", "FLIP_TOP_BOTTOM", "TRANSPOSE",
    "TRANSVERSE")))  # fmt: skip


def _comparable(image: Image.Image) -> np.ndarray:
    """A small grey, zero-mean, unit-variance version; black letterbox bars cut off first."""
    # Only COMPARE_SIDE pixels a side are compared: a large picture is box-reduced by a whole
    # factor first (shorter side still 16 times that), so that a 7-megapixel photo is not
    # turned into grey floats at full size (about 40 of the 74 ms 1.2.1 took on one).
    factor = min(image.size) // (COMPARE_SIDE * 16)
    if factor > 1:
        image = image.reduce(factor)
    grey = np.asarray(image.convert("L"), dtype=np.float32)
    rows, cols = np.where(grey.mean(axis=1) > 24)[0], np.where(grey.mean(axis=0) > 24)[0]
    if len(rows) > 4 and len(cols) > 4:
        grey = grey[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    side = COMPARE_SIDE
    small = np.asarray(Image.fromarray(grey).resize((side, side), Image.Resampling.BOX))
    return (small - small.mean()) / (small.std() + 1e-6)


def thumbnail(ev: Evidence) -> Iterator[Finding]:
    ifd1 = ev.exif.get_ifd(ExifTags.IFD.IFD1)
    offset, length = ifd1.get(THUMB_OFFSET), ifd1.get(THUMB_LENGTH)
    raw = ev.image.info.get("exif", b"")
    if not isinstance(offset, int) or not isinstance(length, int) or not raw:
        return
    if not 0 < length <= MAX_THUMBNAIL:
        yield Finding("unreadable-metadata", 0.0, f"EXIF thumbnail length {length} is implausible")
        return
    start = 6 + offset if raw.startswith(b"Exif\x00\x00") else offset
    with Image.open(io.BytesIO(raw[start : start + length])) as thumb:
        if max(thumb.size) > 1024:
            yield Finding("unreadable-metadata", 0.0, f"EXIF thumbnail {thumb.size} is too large")
            return
        thumb = thumb.convert("RGB")
        # The thumbnail does not carry the orientation; the main image's tag applies to it.
        method = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_270,
                  8: Image.Transpose.ROTATE_90}.get(ev.exif.get(ORIENTATION))  # fmt: skip
        if method is not None:
            thumb = thumb.transpose(method)
        picture = _comparable(ev.rgb)
        correlation = max(
            float((_comparable(thumb if t is None else thumb.transpose(t)) * picture).mean())
            for t in TURNS
        )
    if correlation < THUMBNAIL_MATCH:
        yield Finding(
            "thumbnail-mismatch",
            0.7,
            f"the EXIF thumbnail does not match the image (correlation {correlation:.2f}): "
            "the picture was changed by a program that left the old thumbnail in place",
        )


# Double quantisation above this share is treated as double compression. On images saved once
# (no earlier JPEG grid), 99% stayed below 0.22; see export/evaluate_metadata.py.
DOUBLE_QUANTISATION = 0.25


def jpeg_structure(ev: Evidence) -> Iterator[Finding]:
    if ev.image.format != "JPEG":
        return
    quality, standard = ev.quality
    kind = "libjpeg standard tables" if standard else "custom tables"
    yield Finding("jpeg-quality", 0.0, f"estimated JPEG quality {quality} ({kind})")
    coefficients = jpeg.luma_coefficients(ev.data)
    if coefficients is None:
        return
    share = jpeg.double_quantisation(coefficients)
    if share >= DOUBLE_QUANTISATION:
        yield Finding(
            "double-compression",
            0.3,
            f"DCT histograms show double quantisation ({share:.2f}): saved as JPEG at least "
            "twice on the same 8x8 grid, as when an edited JPEG is saved again",
        )


# Generator marks (PNG text, generator software, IPTC source type) are the provenance
# detector's (plugins/provenance/marks.py): one place for every provenance mark.
RULES: list[Callable[[Evidence], Iterator[Finding]]] = [
    editing_software,
    camera_data,
    thumbnail,
    jpeg_structure,
]


def examine(data: bytes, rgb: Image.Image) -> list[Finding]:
    """Every finding of every rule, in rule order. Never raises on malformed input; Pillow's
    warnings about broken tags become findings too, rather than noise on stderr."""
    findings: list[Finding] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # A large photo is not broken metadata (scanner.imaging decides what is too large).
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            ev = Evidence(data, Image.open(io.BytesIO(data)), rgb)
        except Exception as exc:  # noqa: BLE001 - hostile input: report, never crash
            ev = None
            findings.append(Finding("unreadable-metadata", 0.0, f"metadata unreadable: {exc}"))
        for rule in RULES if ev else []:
            try:
                findings.extend(rule(ev))
            except Exception as exc:  # noqa: BLE001 - one broken block costs only its rule
                message = f"{rule.__name__}: {type(exc).__name__}: {exc}"
                findings.append(Finding("unreadable-metadata", 0.0, message[:300]))
    for message in dict.fromkeys(str(w.message)[:300] for w in caught):
        findings.append(Finding("unreadable-metadata", 0.0, message))
    return findings


def combine(findings: list[Finding]) -> float:
    """1 - prod(1 - weight): independent signs add up, and no number of weak ones reaches 1."""
    return float(1 - np.prod([1 - f.weight for f in findings]))
