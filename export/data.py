"""Listing the shared data sets and splitting them reproducibly."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
from PIL import Image

from scanner.imaging import decode

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
VALIDATION_SHARE = 0.2


def in_validation(group: str, share: float = VALIDATION_SHARE) -> bool:
    """A stable assignment of a group to the validation split, by hash (no RNG state)."""
    digest = hashlib.sha256(group.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def casia_group(path: str | Path) -> str:
    """The CASIA v1 source photo an image belongs to: its own id for an authentic photo
    (Au_ani_0001 -> ani0001), the first (background) source for a tampered one
    (Sp_D_CND_A_pla0005_pla0023_0281 -> pla0005). Splitting by it keeps a tampered image and
    the photo it was made from on the same side."""
    name = Path(path).stem
    match = re.fullmatch(r"Au_([a-z]+)_(\d+)", name)
    if match:
        return f"{match[1]}{match[2]}"
    match = re.match(r"Sp_[DS]_\w+?_[A-Z]_([a-z]+\d+)_", name)
    if not match:
        raise ValueError(f"not a CASIA v1 file name: {name}")
    return match[1]


def _mask_key(stem: str) -> tuple:
    """Some mask files list the two sources the other way round: (type, {sources}, index)."""
    parts = re.split(r"[_.]", stem)
    return parts[1], frozenset(parts[4:6]), parts[6] if len(parts) > 6 else None


def casia_masks(root: Path) -> dict[str, Path]:
    """Tampered image stem -> its ground-truth mask: same name + `_gt.png`, else the one mask
    with the same type, source pair and index (60 of the 749 are named that way; 29 have none)."""
    masks = {p.name[: -len("_gt.png")]: p for p in (root / "masks").glob("*_gt.png")}
    by_key: dict[tuple, list[Path]] = {}
    for stem, path in masks.items():
        by_key.setdefault(_mask_key(stem), []).append(path)
    found = {}
    for image in (root / "tampered").glob("*"):
        if image.stem in masks:
            found[image.stem] = masks[image.stem]
        elif len(by_key.get(_mask_key(image.stem), [])) == 1:
            found[image.stem] = by_key[_mask_key(image.stem)][0]
    return found


def casia(root: Path = DATA / "casia1") -> list[dict]:
    """Every CASIA v1 image: path, label (1 tampered), mask path or None, group, split."""
    masks = casia_masks(root)
    items = []
    for label, folder in ((0, "authentic"), (1, "tampered")):
        for path in sorted((root / folder).glob("*")):
            if path.suffix.lower() not in (".jpg", ".jpeg", ".tif", ".bmp", ".png"):
                continue
            mask = masks.get(path.stem) if label else None
            group = casia_group(path)
            items.append(
                {
                    "path": str(path),
                    "label": label,
                    "mask": str(mask) if mask else None,
                    "group": group,
                    "split": "validation" if in_validation(group) else "train",
                }
            )
    return items


def casia_image(item: dict) -> tuple[Image.Image, np.ndarray | None]:
    """A CASIA item decoded as the scanner decodes it, and its mask (1.0 tampered) at the
    image's size, or None for an authentic photo or a tampered one without a mask."""
    rgb, _ = decode(Path(item["path"]).read_bytes())
    if item["mask"] is None:
        return rgb, None
    mask = Image.open(item["mask"]).convert("L").resize(rgb.size, Image.Resampling.NEAREST)
    return rgb, (np.asarray(mask) > 127).astype(np.float32)


def faces(names: tuple[str, ...] = ("faces_ciplab", "faces_stylegan2")) -> list[dict]:
    """Face crops: path, label (1 fake), set, split (by file name hash: these sets name no
    source person, so files are the unit)."""
    items = []
    for name in names:
        for label, folder in ((0, "real"), (1, "fake")):
            for path in sorted((DATA / name / folder).glob("*.jpg")):
                key = f"{name}/{folder}/{path.name}"
                split = "validation" if in_validation(key) else "train"
                items.append({"path": str(path), "label": label, "set": name, "split": split})
    return items


def face_calibration() -> list[dict]:
    """The real faces a face detector's threshold is chosen on: half of each face set's
    validation reals (by file name hash); the other half stays held out for the card."""
    return [
        item
        for item in faces()
        if item["label"] == 0
        and item["split"] == "validation"
        and not in_validation(f"calibration/{item['set']}/{Path(item['path']).name}", 0.5)
    ]


def gan(root: Path = DATA / "gan_cnndetection") -> list[dict]:
    """CNNDetection images: path, label (1 generated), family (the generator, from the file
    name `<id>_<family>_<real|fake>.jpg`), split (by file name hash)."""
    items = []
    for path in sorted(root.glob("*/*.jpg")):
        family = path.stem.split("_")[1]
        split = "validation" if in_validation(f"gan/{path.name}") else "train"
        label = int(path.parent.name == "fake")
        items.append({"path": str(path), "label": label, "family": family, "split": split})
    return items


def camera_model(path: str | Path) -> str:
    """'Make Model' from a photo's EXIF, or its file name when the EXIF says neither."""
    with Image.open(path) as image:
        exif = image.getexif()
    make, model = str(exif.get(0x010F, "")).strip(), str(exif.get(0x0110, "")).strip()
    return f"{make} {model}".strip() or Path(path).stem


def real_photos(share: float = 0.5, train_share: float = 0.0) -> list[dict]:
    """Real photos from outside CASIA and the face sets: camera-native JPEGs (group: camera
    model, whose quantisation tables identify it) and lossless Kodak scans (group: file).
    `split` is "calibration" or "held-out" by group, `share` of the groups held out; with
    `train_share`, that share of the calibration groups becomes "train" instead (the held-out
    groups stay exactly those of the default split, so held-out figures stay comparable)."""
    items = []
    for path in sorted((DATA / "camera_photos" / "real").glob("*")):
        group = f"camera/{camera_model(path)}"
        items.append({"path": str(path), "label": 0, "set": "camera_photos", "group": group})
    for path in sorted((DATA / "real_lossless" / "real").glob("*.png")):
        items.append(
            {"path": str(path), "label": 0, "set": "real_lossless", "group": f"kodak/{path.name}"}
        )
    for item in items:
        item["split"] = "held-out" if in_validation(item["group"], share) else "calibration"
        if item["split"] == "calibration" and in_validation(f"train/{item['group']}", train_share):
            item["split"] = "train"
    return items


def sd15(root: Path = DATA / "sd15") -> list[dict]:
    """Stable Diffusion 1.5 tiles: each 2x2 grid file gives four items (`tile` 0-3, the grid's
    seams are not image content), split by file (one artist per file), never by tile."""
    items = []
    for path in sorted((root / "fake").glob("*.webp")):
        split = "validation" if in_validation(f"sd15/{path.name}") else "train"
        for tile in range(4):
            items.append(
                {"path": str(path), "tile": tile, "label": 1, "family": "sd15", "split": split}
            )
    return items


def load_rgb(item: dict) -> Image.Image:
    """An item's picture as RGB: the whole file, or its `tile` (0-3) of a 2x2 grid."""
    with Image.open(item["path"]) as image:
        rgb = image.convert("RGB")
    if "tile" in item:
        col, row = item["tile"] % 2, item["tile"] // 2
        w, h = rgb.width // 2, rgb.height // 2
        rgb = rgb.crop((col * w, row * h, (col + 1) * w, (row + 1) * h))
    return rgb


def generated_images() -> list[dict]:
    """Generated pictures (label 1) and real photos (label 0) for a generated-image detector,
    each with its `family` (the generator, or the real photos' source) and split: CNNDetection
    (both classes, per generator), StyleGAN2 faces and their real portraits, SD 1.5 tiles,
    faces_ciplab's real faces (its fakes are Photoshop edits of real photos, neither class)
    and CASIA's authentic photos. camera_photos and the Kodak scans stay out: the threshold is
    chosen on their calibration half (real_photos) and the card measured on the other."""
    items = [dict(i) for i in gan()]
    for item in faces():
        if item["set"] == "faces_ciplab" and item["label"] == 1:
            continue
        family = "stylegan2" if item["set"] == "faces_stylegan2" else "ciplab"
        items.append({**item, "family": family})
    items += [{**i, "family": "casia"} for i in casia() if i["label"] == 0]
    return items + sd15()
