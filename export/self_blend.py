"""Self-blended faces: training fakes made from one real face each (after Shiohara & Yamasaki,
"Detecting Deepfakes with Self-Blended Images", CVPR 2022; written from the paper).

A face swap or a Photoshop face composite pastes a face region into a photo of another face,
and what every such edit leaves is the blend: a boundary where colour, sharpness and geometry
change. A self-blended image makes that boundary from a real face and a slightly altered copy
of itself, so a network trained on them learns the boundary, not one generator's look, and
needs no fake to learn from. The steps (section 3 of the paper):
1. source and target: two copies of the real face; the source is altered: colour (RGB shifts,
   hue, brightness, contrast), frequency (a blur or a sharpening) and geometry (a small resize
   and translation: the landmark mismatch of a swap);
2. a mask of the inner face (the paper takes the convex hull of the landmarks; these are face
   crops centred on the face, so an ellipse around the crop's centre stands in for it) or, half
   the time, of one to four of its parts (eyes, nose, mouth: what Photoshop composites of the
   faces_ciplab kind replace; a first version with the whole-face mask only learnt nothing
   that carried over to them, ROC AUC 0.47), deformed elastically, grown or shrunk, blurred,
   and scaled by a blend ratio;
3. blended = mask * source + (1 - mask) * target.
The training script gives every real face and its blend the same random final JPEG.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # as the paper: full blends half the time


def altered(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The source: `rgb` (uint8 HxWx3) with its colour, frequency and geometry changed a little."""
    image = rgb.astype(np.float32)
    if rng.random() < 0.5:  # RGB shift
        image += rng.uniform(-20, 20, 3)
    if rng.random() < 0.5:  # hue and saturation
        hsv = cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV)
        hsv = hsv.astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-5, 5)) % 180
        hsv[..., 1] *= rng.uniform(0.8, 1.2)
        image = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
        image = image.astype(np.float32)
    if rng.random() < 0.5:  # brightness and contrast
        image = (image - 128) * rng.uniform(0.85, 1.15) + 128 + rng.uniform(-15, 15)
    image = np.clip(image, 0, 255)
    if rng.random() < 0.5:  # frequency: a blur, or an unsharp mask
        sigma = rng.uniform(0.5, 1.5)
        blurred = cv2.GaussianBlur(image, (0, 0), sigma)
        image = blurred if rng.random() < 0.5 else image + (image - blurred) * rng.uniform(0.5, 1.5)
    h, w = image.shape[:2]
    # Geometry: scale each axis by 0.95-1.05 and shift by up to 3%, about the centre.
    sx, sy = rng.uniform(0.95, 1.05, 2)
    tx, ty = rng.uniform(-0.03, 0.03, 2) * (w, h)
    matrix = np.array([[sx, 0, (1 - sx) * w / 2 + tx], [0, sy, (1 - sy) * h / 2 + ty]])
    image = cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)
    return np.clip(image, 0, 255)


def _deformed(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`mask` elastically deformed (a swap's outline is no ellipse), grown or shrunk, and its
    edge softened by a random amount; scaled back to a peak of 1."""
    h, w = mask.shape
    strength, smooth = rng.uniform(0.02, 0.06) * w, max(3, w // 8)
    dx = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), smooth)
    dy = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), smooth)
    dx *= strength / (np.abs(dx).max() + 1e-6)
    dy *= strength / (np.abs(dy).max() + 1e-6)
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mask = cv2.remap(mask, grid_x + dx, grid_y + dy, cv2.INTER_LINEAR)
    side = 2 * int(rng.integers(1, max(2, w // 30))) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    mask = cv2.dilate(mask, kernel) if rng.random() < 0.5 else cv2.erode(mask, kernel)
    mask = cv2.GaussianBlur(mask, (0, 0), rng.uniform(0.005, 0.04) * w)
    return mask / max(float(mask.max()), 1e-6)


# Where a face crop centred on the face has its parts (share of width, height): left eye,
# right eye, nose, mouth. Composites of the faces_ciplab kind replace some of these parts.
PARTS = ((0.33, 0.42), (0.67, 0.42), (0.5, 0.58), (0.5, 0.74))


def part_places(size: tuple[int, int], landmarks: np.ndarray | None = None):
    """(centres of the left eye, right eye, nose and mouth in pixels; the scale of the face in
    pixels, the side of a crop that fits it as PARTS assume). From MTCNN's five landmarks
    (scanner.face_finder.detect_with_landmarks) when given, else from PARTS."""
    w, h = size
    if landmarks is None:
        return [(w * x, h * y) for x, y in PARTS], (w, h)
    points = np.asarray(landmarks, dtype=float)
    centres = [points[0], points[1], points[2], (points[3] + points[4]) / 2]
    # In a crop as PARTS assume, the eyes are 0.34 of the side apart.
    side = max(float(np.linalg.norm(points[1] - points[0])), 1.0) / (PARTS[1][0] - PARTS[0][0])
    return [tuple(c) for c in centres], (side, side)


def face_mask(
    size: tuple[int, int], rng: np.random.Generator, landmarks: np.ndarray | None = None
) -> np.ndarray:
    """float32 HxW 0..1 times a blend ratio: the inner face (an ellipse around the face's
    centre) or, as often, one to four of its parts (eyes, nose, mouth), deformed and blurred.
    The parts are where `landmarks` (five points, see part_places) put them, else where a
    centred face crop has them."""
    w, h = size
    centres, (fw, fh) = part_places(size, landmarks)
    mask = np.zeros((h, w), np.float32)
    jitter = rng.uniform(-0.06, 0.06, 2)  # the face is rarely exactly centred
    if rng.random() < 0.5:
        if landmarks is None:
            middle = (w * 0.5, h * 0.56)
        else:  # between the eyes and the mouth, where the crop's (0.5, 0.56) falls
            middle = tuple(np.mean([centres[0], centres[1], centres[3]], axis=0))
        centre = (round(middle[0] + fw * jitter[0]), round(middle[1] + fh * jitter[1]))
        axes = (round(fw * rng.uniform(0.22, 0.36)), round(fh * rng.uniform(0.28, 0.42)))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(-10, 10)), 0, 360, 1.0, -1)
    else:
        chosen = rng.choice(len(PARTS), int(rng.integers(1, len(PARTS) + 1)), replace=False)
        for index in chosen:
            x, y = centres[index]
            centre = (round(x + fw * jitter[0]), round(y + fh * jitter[1]))
            axes = (round(fw * rng.uniform(0.08, 0.16)), round(fh * rng.uniform(0.05, 0.1)))
            cv2.ellipse(mask, centre, axes, float(rng.uniform(-15, 15)), 0, 360, 1.0, -1)
    return _deformed(mask, rng) * float(rng.choice(BLEND_RATIOS))


def self_blend(
    rgb: Image.Image, rng: np.random.Generator, landmarks: np.ndarray | None = None
) -> tuple[Image.Image, np.ndarray]:
    """(the self-blended face, its blend mask float32 0..1) of a real face crop; the part
    masks placed by `landmarks` when given (face_mask)."""
    target = np.asarray(rgb.convert("RGB"), dtype=np.float32)
    source = altered(target.astype(np.uint8), rng)
    mask = face_mask(rgb.size, rng, landmarks)[..., None]
    blended = mask * source + (1 - mask) * target
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8)), mask[..., 0]


def face_swap(target: Image.Image, donor: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A crude face composite for evaluation (not training): `donor`'s inner face, colour-matched
    to `target`'s, blended into `target` with the same kind of mask."""
    donor = donor.convert("RGB").resize(target.size, Image.Resampling.BILINEAR)
    t = np.asarray(target.convert("RGB"), dtype=np.float32)
    d = np.asarray(donor, dtype=np.float32)
    mask = face_mask(target.size, rng)
    mask = np.clip(mask / max(float(mask.max()), 1e-6), 0, 1)[..., None]  # a whole swap
    inside = mask[..., 0] > 0.5
    if inside.any():  # match the donor's colour statistics to the target inside the mask
        scale = t[inside].std(0) / (d[inside].std(0) + 1e-6)
        d = (d - d[inside].mean(0)) * scale + t[inside].mean(0)
    blended = mask * d + (1 - mask) * t
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8))
