"""Opening images safely, once, and the views detectors ask for (RGB, ELA).

Pillow's decompression-bomb limits stay on. A file is only decoded when its first bytes carry a
known image signature, so a video or a text file named `.jpg` never reaches a decoder.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass, field

import numpy as np
import pillow_heif
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from scanner.ela import (
    brighten,
    ela_difference,
    grey_error_level,
    largest_channel,
    largest_value,
)
from scanner.faces import Face, crop_face, find_marked_faces

# HEIC/HEIF (what iPhones write) through libheif; Pillow reads AVIF itself.
pillow_heif.register_heif_opener()

# Pillow warns (DecompressionBombWarning) from MAX_IMAGE_PIXELS to twice that, where it still
# decodes, and raises above (decode's `decompression-bomb` error row). What the scan can afford
# is the scan's own decision (its pixel budget); the warning only printed itself raw on stderr
# each time the ELA or a detector opened a large photo's bytes again (a 108 MP panorama).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# Pillow's other warnings are about the file ("Corrupt EXIF data", a palette's transparency):
# raw on stderr they reached the user's terminal at every damaged EXIF block. The metadata
# detector records them as findings in its own context (plugins/metadata/rules.py: examine).
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")

# Formats we decode. MPO is what many cameras write: a JPEG with extra frames.
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)
ALLOWED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "TIFF", "BMP", "WEBP", "HEIF", "AVIF"})
IMAGE_SUFFIXES = frozenset(
    {
        *(".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".tif", ".tiff", ".bmp", ".webp"),
        *(".heic", ".heif", ".hif", ".avif"),
    }
)
SNIFF_BYTES = 16
# ISO base media files (HEIF, AVIF, MP4, QuickTime) start with an `ftyp` box whose major brand
# says what they hold.
HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
)
AVIF_BRANDS = frozenset({b"avif", b"avis"})


def sniff(head: bytes) -> str | None:
    """The image format that a file's first bytes announce, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "HEIF" if brand in HEIF_BRANDS else "AVIF" if brand in AVIF_BRANDS else None
    for magic, name in SIGNATURES:
        if head.startswith(magic):
            return name
    return None


def skip_kind(head: bytes) -> str:
    """What a file that is not an image seems to be, for the scan's summary: video, document,
    archive, text or other."""
    if head[4:8] == b"ftyp" or head.startswith(b"\x1a\x45\xdf\xa3") or head[8:12] == b"AVI ":
        return "video"
    if head.startswith((b"%PDF", b"{\\rtf", b"\xd0\xcf\x11\xe0")):
        return "document"
    if head.startswith((b"PK\x03\x04", b"\x1f\x8b", b"7z\xbc\xaf", b"Rar!")):
        return "archive"
    if not head:
        return "empty"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        # A multi-byte character cut at the end of the sniffed bytes is still text.
        try:
            head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return "other"
    return "text" if b"\x00" not in head else "other"


class ImageError(Exception):
    """A file that cannot be scanned; `kind` is a short stable word stored with the error row."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _open(data: bytes) -> tuple[Image.Image, str]:
    image = Image.open(io.BytesIO(data))
    fmt = image.format or "unknown"
    if fmt not in ALLOWED_FORMATS:
        raise ImageError("unsupported-format", f"{fmt} images are not scanned")
    image.load()
    return image, fmt


def header_pixels(data: bytes) -> int:
    """Width x height from the file's header, without decoding; 0 when it cannot be read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                return image.width * image.height
    except Exception:  # noqa: BLE001 - any header a decoder refuses: the worker will say why
        return 0


def _salvage(data: bytes) -> tuple[Image.Image, str] | None:
    """What a damaged file still shows (as a viewer would show it: a truncated file's missing
    part grey, an oversized text chunk skipped), or None when nothing of the picture decodes.
    Pillow's switch is process-wide; the scan decodes one image at a time per process."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        image, fmt = _open(data)
    except Exception:  # noqa: BLE001 - the first error is the one reported
        return None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous
    extrema = image.getextrema()
    bands = extrema if isinstance(extrema[0], tuple) else (extrema,)
    if {band for band in bands} <= {(0, 0), (128, 128)} and len(set(bands)) == 1:
        return None  # all the decoder's fill (JPEG grey, PNG black): nothing of the picture
    return image, fmt


def decode(data: bytes) -> tuple[Image.Image, str]:
    """Decode `data` fully, apply its EXIF orientation; return (RGB image, format). A damaged
    file raises (training and evaluation want intact images); the scan uses decode_salvaging."""
    rgb, fmt, damage = decode_salvaging(data, salvage=False)
    return rgb, fmt


def decode_salvaging(
    data: bytes, salvage: bool = True
) -> tuple[Image.Image, str, tuple[str, str] | None]:
    """Decode `data` fully, apply its EXIF orientation; return (RGB image, format, damage).

    `damage` is None, or (kind, message) for a truncated or malformed file that still shows a
    picture: it is decoded as a viewer would show it and scored, so that cutting two bytes off
    a file cannot turn a verdict into an error row. Raises ImageError with kind
    `decompression-bomb`, `truncated`, `unsupported-format` or `corrupt`.
    """
    damage = None
    try:
        image, fmt = _open(data)
    except Image.DecompressionBombError as exc:
        raise ImageError("decompression-bomb", str(exc)) from None
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("corrupt", "not a readable image (Pillow cannot identify it)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc) or type(exc).__name__
        kind = "truncated" if "truncated" in text or isinstance(exc, EOFError) else "corrupt"
        salvaged = _salvage(data) if salvage else None
        if salvaged is None:
            raise ImageError(kind, text) from None
        image, fmt = salvaged
        damage = (kind, f"{text}; scored as far as it decodes")
    except Exception as exc:  # noqa: BLE001 - decoder plugins (libheif...) raise their own types
        raise ImageError("corrupt", f"{type(exc).__name__}: {exc}") from None
    # Hostile or malformed EXIF must not lose the image: it is then scanned unrotated. In
    # place: a picture without an orientation is not copied (30 ms and 36 MB at 12 MP).
    with contextlib.suppress(Exception):
        ImageOps.exif_transpose(image, in_place=True)
    return as_rgb(image), fmt, damage


def as_rgb(image: Image.Image) -> Image.Image:
    """`image` as 8-bit RGB, as a viewer shows it. Pillow's own conversion clips 16-bit, 32-bit
    and float greys to 0..255: a 16-bit PNG came out nearly all white (copy-move then found
    "copies" in what was left), a float TIFF of 0..1 all black. Those are scaled instead:
    16-bit by 255/65535; 32-bit integers as 8-bit or 16-bit when they fit, else by their
    largest value; floats of 0..1 by 255, any other range from its least to its largest."""
    if image.mode == "RGB":
        return image
    if not (image.mode.startswith("I") or image.mode == "F"):
        return image.convert("RGB")
    values = np.asarray(image)
    if image.mode.startswith("I;16"):  # in integers: 4 bytes a pixel, not a float's 8
        grey = (values.astype(np.uint32) * 255 + 32767) // 65535
        return Image.fromarray(grey.astype(np.uint8)).convert("RGB")
    values = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    if image.mode == "I":
        low = 0.0
        high = 255.0 if high <= 255 else 65535.0 if high <= 65535 else high
    elif low >= 0 and high <= 1:  # "F"
        low, high = 0.0, 1.0
    grey = (values - low) * (255.0 / max(high - low, 1e-12))
    return Image.fromarray(np.clip(grey.round(), 0, 255).astype(np.uint8)).convert("RGB")


def shrink(image: Image.Image, max_side: int | None) -> Image.Image:
    """`image` itself when its longest side is at most `max_side`, else a shrunk copy."""
    if max_side and max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return image


def to_png(image: Image.Image, max_side: int | None = None) -> bytes:
    """PNG bytes of `image`, shrunk so that its longest side is at most `max_side`."""
    image = shrink(image, max_side)
    buffer = io.BytesIO()
    # zlib level 1: on noisy ELA images level 6 took 0.2-0.7 s per megapixel for ~15% fewer bytes.
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def heatmap_png(heatmap: np.ndarray) -> bytes:
    """A 2-D array of per-pixel or per-patch fake probabilities as an 8-bit grey PNG."""
    values = np.asarray(heatmap)
    if values.ndim != 2:
        raise ValueError(f"a heatmap must be 2-D, got shape {values.shape}")
    if values.dtype == bool or np.issubdtype(values.dtype, np.integer):
        # A mask at the image's resolution (copy-move's): 0 or at least 1 is all an integer
        # can say once clipped to 0..1, so no float copy of 12 megapixels is needed.
        pixels = np.where(values > 0, np.uint8(255), np.uint8(0))
    else:
        pixels = (np.clip(values.astype(np.float32), 0.0, 1.0) * 255).round().astype(np.uint8)
    return to_png(Image.fromarray(pixels, mode="L"))


@dataclass
class Sample:
    """One decoded image, handed to every detector; each view is computed at most once."""

    path: str
    sha256: str
    data: bytes
    rgb: Image.Image
    format: str
    ela_quality: int = 90
    # The user says every input is already a face crop: faces() is then the whole image.
    face_crops: bool = False
    # quality -> the raw difference (3 bytes a pixel), made only for a detector that reads it;
    # quality -> (its per-pixel largest channel, largest difference), which a scan stores and
    # makes a strip at a time when no detector wants the raw one; the brightened image only
    # when asked for (each a full-size copy: 0.5 GB for a 169-megapixel picture).
    _raw: dict[int, Image.Image] = field(default_factory=dict, repr=False)
    _grey: dict[int, tuple[Image.Image, int]] = field(default_factory=dict, repr=False)
    _bright: dict[int, Image.Image] = field(default_factory=dict, repr=False)
    _faces: list[Face] | None = field(default=None, repr=False)

    def ela(self, quality: int | None = None) -> Image.Image:
        """The ELA image, brightened as the seed did (default quality: the scan's)."""
        quality = quality or self.ela_quality
        if quality not in self._bright:
            raw = self.ela_difference(quality)
            self._bright[quality] = brighten(raw, self.ela_max_diff(quality))[0]
        return self._bright[quality]

    def ela_difference(self, quality: int | None = None) -> Image.Image:
        """The raw, unscaled ELA difference (absolute error levels, 0-255 per channel)."""
        quality = quality or self.ela_quality
        if quality not in self._raw:
            self._raw[quality] = ela_difference(self.rgb, quality)
        return self._raw[quality]

    def ela_grey_difference(self, quality: int | None = None) -> Image.Image:
        """The raw difference's largest channel per pixel (the stored grey ELA's source)."""
        return self._grey_error_level(quality)[0]

    def ela_max_diff(self, quality: int | None = None) -> int:
        return self._grey_error_level(quality)[1]

    def drop_ela_differences(self) -> None:
        """Forget the full-size ELA differences kept for later calls (computed again if asked
        for): before the picture leaves the process, when no detector will read them."""
        self._raw.clear()
        self._grey.clear()

    def _grey_error_level(self, quality: int | None) -> tuple[Image.Image, int]:
        quality = quality or self.ela_quality
        if quality not in self._grey:
            if quality in self._raw:
                # The grey from the raw difference already made: one band read by numpy for
                # its largest value (a 12 MP photo: 11 + 1 ms, where three histograms took 17).
                grey = largest_channel(self._raw[quality])
                self._grey[quality] = (grey, largest_value(grey))
            else:
                self._grey[quality] = grey_error_level(self.rgb, quality)
        return self._grey[quality]

    def faces(self) -> list[Face]:
        """The faces in the image, largest first (each cropped once for every detector)."""
        if self._faces is None:
            if self.face_crops:
                self._faces = [Face((0, 0, *self.size), crop_face(self.rgb))]
            else:
                self._faces = [
                    Face(box, crop_face(self.rgb, box), points)
                    for box, points in find_marked_faces(self.rgb)
                ]
        return self._faces

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.size
