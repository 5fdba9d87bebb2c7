"""Pictures people look at: a thumbnail of the photo, its ELA brightened to be seen, each
heatmap as a colour overlay on the photo at the photo's aspect ratio, with the evidence a
detector gave drawn on it (face boxes, copy-move region pairs linked by a line), and the
one-image sheet of `scanner show --out`. Shared by the HTML report and the CLI."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from scanner.imaging import decode

THUMB_SIDE = 320  # longest side of the report's pictures
# A perceptual ramp (dark blue -> magenta -> orange -> yellow, like "inferno"): low scores
# stay dark and see-through, high ones bright. The CSS legend uses the same stops.
RAMP = np.array(
    [(0.0, (20, 11, 52)), (0.35, (120, 28, 109)), (0.6, (201, 57, 70)),
     (0.8, (247, 138, 9)), (1.0, (252, 255, 164))],
    dtype=object,
)  # fmt: skip
OVERLAY_ALPHA = 0.65  # opacity of a score of 1; a score of 0 leaves the photo as it is
BOX_COLOURS = ((0, 229, 255), (255, 64, 129), (118, 255, 3), (255, 234, 0))


def colour_map(values: np.ndarray) -> np.ndarray:
    """(H, W) values in 0..1 -> (H, W, 3) uint8 colours of RAMP."""
    stops = np.array([s for s, _ in RAMP], dtype=np.float32)
    colours = np.array([c for _, c in RAMP], dtype=np.float32)
    flat = np.clip(values.astype(np.float32).ravel(), 0.0, 1.0)
    channels = [np.interp(flat, stops, colours[:, k]) for k in range(3)]
    return np.stack(channels, axis=1).reshape(*values.shape, 3).round().astype(np.uint8)


def thumbnail(rgb: Image.Image, side: int = THUMB_SIDE) -> Image.Image:
    """The picture with its longest side at most `side`, aspect ratio kept."""
    rgb = rgb.convert("RGB")
    rgb.thumbnail((side, side), Image.Resampling.LANCZOS)
    return rgb


def open_photo(paths: Sequence[str]) -> Image.Image | None:
    """The first of `paths` that still decodes (the report is made from the database; the
    files may have moved), or None."""
    for path in paths:
        try:
            return decode(Path(path).read_bytes())[0]
        except Exception:  # noqa: BLE001 - gone, unreadable or changed: try the next path
            continue
    return None


def ela_picture(png: bytes, size: tuple[int, int]) -> tuple[Image.Image, float]:
    """The stored ELA image at `size`, stretched so its 99.5th percentile is white: stored at a
    fixed scale it is mostly black on a good photo. Returns it and the extra gain applied."""
    ela = Image.open(io.BytesIO(png)).convert("RGB").resize(size, Image.Resampling.BILINEAR)
    values = np.asarray(ela, dtype=np.float32)
    top = float(np.percentile(values, 99.5)) if values.size else 0.0
    gain = 255.0 / top if top > 0 else 1.0
    gain = max(1.0, min(gain, 16.0))
    return Image.fromarray(np.clip(values * gain, 0, 255).astype(np.uint8)), gain


def overlay(photo: Image.Image, heatmap_png: bytes | None) -> Image.Image:
    """The photo with the heatmap as colours over it (resized to the photo: heatmaps are
    stored per cell or at a lower resolution)."""
    photo = photo.convert("RGB")
    if not heatmap_png:
        return photo
    grey = Image.open(io.BytesIO(heatmap_png)).convert("L")
    grey = grey.resize(photo.size, Image.Resampling.BILINEAR)
    values = np.asarray(grey, dtype=np.float32) / 255.0
    alpha = (values * OVERLAY_ALPHA)[..., None]
    mixed = np.asarray(photo, dtype=np.float32) * (1 - alpha) + colour_map(values) * alpha
    return Image.fromarray(mixed.round().astype(np.uint8))


def marks_anything(heatmap_png: bytes) -> bool:
    """Whether a stored heatmap has any cell above zero."""
    return Image.open(io.BytesIO(heatmap_png)).convert("L").getextrema()[1] > 0


def evidence_boxes(details: dict | None) -> list[tuple[list[tuple[int, int, int, int]], str]]:
    """Boxes a detector's details name, in image pixels (left, top, right, bottom), grouped:
    one face per group, or one copy-move region pair (the two boxes are linked when drawn),
    with a label. Unknown shapes give nothing, never an error: details come from plugins."""
    out = []
    if not isinstance(details, dict):
        return out
    for face in details.get("faces") or []:
        box = face.get("box") if isinstance(face, dict) else None
        if _numbers(box, 4):
            left, top, width, height = box  # faces: left, top, width, height
            label = f"{face['score']:.2f}" if _numbers([face.get("score")], 1) else ""
            out.append(([(left, top, left + width, top + height)], label))
    for region in details.get("regions") or []:
        boxes = region.get("boxes") if isinstance(region, dict) else None
        if isinstance(boxes, list) and boxes and all(_numbers(b, 4) for b in boxes):
            p = region.get("probability")
            label = f"{p:.2f}" if _numbers([p], 1) else ""
            out.append(([tuple(b) for b in boxes], label))  # regions: left, top, right, bottom
    return out


def _numbers(value, count: int) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == count
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )


def draw_boxes(picture: Image.Image, groups, image_size: tuple[int, int]) -> Image.Image:
    """`groups` (evidence_boxes) drawn on a picture of the image shrunk to picture.size."""
    if not groups:
        return picture
    picture = picture.copy()
    draw = ImageDraw.Draw(picture)
    sx, sy = picture.width / max(image_size[0], 1), picture.height / max(image_size[1], 1)
    for n, (boxes, label) in enumerate(groups[:24]):
        colour = BOX_COLOURS[n % len(BOX_COLOURS)]
        scaled = [
            (round(b[0] * sx), round(b[1] * sy), round(b[2] * sx), round(b[3] * sy)) for b in boxes
        ]
        scaled = [(min(a, c), min(b, d), max(a, c), max(b, d)) for a, b, c, d in scaled]
        for box in scaled:
            draw.rectangle(box, outline=colour, width=2)
        centres = [((b[0] + b[2]) // 2, (b[1] + b[3]) // 2) for b in scaled]
        if len(centres) > 1:  # a copy-move pair: source and copy, linked
            draw.line(centres, fill=colour, width=2)
        if label:
            draw.text((scaled[0][0] + 3, scaled[0][1] + 2), label, fill=colour)
    return picture


def base_picture(
    paths: Sequence[str], size: tuple[int, int], side: int = THUMB_SIDE
) -> tuple[Image.Image, bool]:
    """The photo shrunk to `side`, and True; or, when none of `paths` decodes any more (moved
    or deleted since the scan), a grey stand-in of its `size`'s aspect ratio, and False."""
    found = open_photo(paths)
    if found is not None:
        return thumbnail(found, side), True
    scale = side / max(size)
    shape = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
    return Image.new("RGB", shape, (64, 64, 64)), False


def sheet(panels: list[tuple[Image.Image, str]], lines: list[str], per_row: int = 3) -> Image.Image:
    """Panels in rows of `per_row`, each with its caption under it, then text lines under all."""
    font = ImageFont.load_default()
    pad, line = 8, 16
    rows = [panels[i : i + per_row] for i in range(0, len(panels), per_row)]
    heights = [max(p.height for p, _ in row) for row in rows]
    width = max(sum(p.width for p, _ in row) + pad * (len(row) + 1) for row in rows)
    total = pad + sum(h + pad + line + pad for h in heights) + line * len(lines) + pad
    out = Image.new("RGB", (width, total), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    y = pad
    for row, height in zip(rows, heights, strict=True):
        x = pad
        for picture, caption in row:
            out.paste(picture, (x, y))
            draw.text((x, y + height + pad // 2), caption[:60], fill=(0, 0, 0), font=font)
            x += picture.width + pad
        y += height + pad + line + pad
    for text in lines:
        draw.text((pad, y), text[:200], fill=(0, 0, 0), font=font)
        y += line
    return out


def legend(width: int = 256, height: int = 12) -> Image.Image:
    ramp = np.tile(np.linspace(0, 1, width, dtype=np.float32), (height, 1))
    return Image.fromarray(colour_map(ramp))


def to_bytes(picture: Image.Image, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        picture.convert("RGB").save(buffer, "JPEG", quality=80)
    else:
        picture.save(buffer, fmt)
    return buffer.getvalue()
