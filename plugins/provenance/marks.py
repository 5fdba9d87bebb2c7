"""Generator marks outside Content Credentials: what image generators write into the file's own
metadata. PNG text chunks (AUTOMATIC1111's `parameters`, ComfyUI's `prompt` and `workflow`,
InvokeAI's and others'), the same generation parameters in a JPEG's EXIF UserComment, a
generator named as the software (EXIF Software, PNG Software, XMP CreatorTool/softwareAgent),
and the IPTC digital source type for generated media in XMP. Parsed with metadata's Evidence,
which reads each block once and guards against hostile bytes."""

from __future__ import annotations

import io
import re
import warnings

from PIL import ExifTags, Image

from scanner_plugins.metadata.rules import Evidence

GENERATORS = (
    "midjourney", "dall-e", "dall·e", "stable diffusion", "stablediffusion", "firefly",
    "novelai", "comfyui", "automatic1111", "invokeai", "leonardo.ai", "flux",
)  # fmt: skip
# Keys AI image tools write into PNG text chunks.
GENERATOR_PNG_KEYS = ("parameters", "prompt", "workflow", "dream", "sd-metadata", "invokeai")
# IPTC digital source types for generated media, as written into XMP.
GENERATED_SOURCE = re.compile(rb"(compositeWith)?trainedAlgorithmicMedia", re.IGNORECASE)
# AUTOMATIC1111's parameters text ("... Steps: 30, Sampler: Euler a, CFG scale: 7, Seed: ...")
# and ComfyUI's node graph, as they appear in an EXIF UserComment.
GENERATION_TEXT = re.compile(r"Steps: \d+, Sampler: |\"class_type\"\s*:")
USER_COMMENT = 0x9286
MAX_COMMENT = 1 << 16


def _user_comment(raw) -> str:
    """EXIF UserComment's text: 8 bytes naming the character code, then the text."""
    if isinstance(raw, str):
        return raw[:MAX_COMMENT]
    if not isinstance(raw, bytes):
        return ""
    code, text = raw[:8], raw[8 : 8 + MAX_COMMENT]
    if code.startswith(b"UNICODE"):
        # The byte order is not recorded: the one whose text is mostly ASCII is right.
        candidates = [text.decode(e, "replace") for e in ("utf-16-be", "utf-16-le")]
        return max(candidates, key=lambda t: sum(c.isascii() for c in t))
    return text.decode("utf-8", "replace")


def generator_marks(data: bytes) -> list[str]:
    """Every generator mark in the file's metadata, as short descriptions ([] for none).
    Never raises on malformed input: what cannot be read has no marks."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # metadata's own rules report broken blocks
            ev = Evidence(data, Image.open(io.BytesIO(data)), None)
            keys = [k for k in ev.image.info if str(k).lower() in GENERATOR_PNG_KEYS]
            software = ev.software()
            comment = _user_comment(ev.exif.get_ifd(ExifTags.IFD.Exif).get(USER_COMMENT))
    except Exception:  # noqa: BLE001 - hostile input: no marks, never a crash
        return []
    found = [f"PNG text chunk {k!r}" for k in keys]
    found += [f"software {n!r}" for n in software if any(word in n.lower() for word in GENERATORS)]
    if GENERATION_TEXT.search(comment):
        found.append("generation parameters in the EXIF UserComment")
    source = GENERATED_SOURCE.search(ev.xmp)
    if source:
        found.append(f"XMP digital source type {source.group(0).decode()}")
    return found
