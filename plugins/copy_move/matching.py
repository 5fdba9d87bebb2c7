"""Copy-move evidence from keypoints matched within one image (after Amerini et al. 2011).

SIFT keypoints of a bounded grey copy are matched against the rest of the same image with the
generalised 2-nearest-neighbour test (g2NN); pairs too close together are dropped; affine
transforms are found one at a time by RANSAC over the pairs taken in both directions, and a
transform becomes a region pair when enough inliers agree, its scale is plausible and the two
regions are apart. Each pair is then measured two ways that the detector's evidence reads
(plugins/copy_move/__init__.py): whether its keypoints, or since 1.8.0 its pixels, repeat
one step further on (windows, tiles, text: the known false alarm), and how much of the copy
the moved source reproduces pixel for pixel, which also gives the heatmap.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import cv2
import numpy as np

from scanner_plugins.copy_move import blocks

# The grey copy's longer side is brought into this range: small photos (CASIA's 384x256) are
# enlarged so that SIFT finds keypoints in small copied regions; large ones are shrunk so that
# the cost stays bounded (a 12-megapixel photo costs what a 1-megapixel one does).
# 576 since 1.4.0 (768 before): with the blocks beside SIFT, as many training copy-moves are
# found for 30-40% less time per small photo (MODEL_CARD.md).
WORK_MIN_SIDE = 576
WORK_MAX_SIDE = 1024
MAX_KEYPOINTS = 3000
OCTAVE_LAYERS = 3  # SIFT's scales per octave (OpenCV's and Lowe's default)
# The longer side of the copy SIFT is given when the work copy was not enlarged: half the work
# copy for large photos (1024 -> 512), but never less. Before 1.7.0 a photo of 576-1023 px
# got half of its own size (288-511 px), coarser than CASIA's 384 px photos (enlarged to 576
# and given whole) or large ones: copy-moves of 5% of the picture made in camera photos shrunk
# to 800 / 640 px were caught 35% / 22% of the time, 53% / 46% at 512 px (MODEL_CARD.md).
SIFT_MIN_SIDE = 512
NEIGHBOURS = 8  # g2NN looks at this many nearest descriptors of each keypoint
G2NN_RATIO = 0.6  # 0.5 in Amerini et al.; 0.6 keeps 10% more re-saved copy-moves
MIN_OFFSET = 0.04  # pairs closer than this share of the diagonal are the same structure
RANSAC_PIXELS = 4.0  # inlier tolerance, in work-copy pixels
MAX_MODELS = 4
MIN_INLIERS = 5  # fewer agreeing pairs are never reported as a region pair
# A pair whose keypoints repeat this often is a periodic structure (model.json's max_repeats,
# which export/train_copy_move.py writes from this).
PERIODIC = 0.5


@dataclass(frozen=True)
class RegionPair:
    """A verified copy: `transform` (2x3, work-copy pixels) maps `source` points onto `copy`."""

    transform: np.ndarray
    source: np.ndarray  # (n, 2) inlier keypoints, work-copy pixels
    copy: np.ndarray
    repeats: float  # share of source keypoints that repeat further on: a periodic structure
    dense: float  # share of the copy's textured pixels the moved source reproduces
    reproduced: np.ndarray  # uint8 0/1 mask of those pixels (work-copy size): the heatmap's start

    @property
    def inliers(self) -> int:
        return len(self.source)


def work_copy(grey: np.ndarray) -> tuple[np.ndarray, float]:
    """(grey copy whose longer side is within WORK_MIN_SIDE..WORK_MAX_SIDE, its scale)."""
    side = max(grey.shape)
    scale = 1.0
    if side < WORK_MIN_SIDE:
        scale = WORK_MIN_SIDE / side
    elif side > WORK_MAX_SIDE:
        scale = WORK_MAX_SIDE / side
    if scale != 1.0:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        method = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
        grey = cv2.resize(grey, size, interpolation=method)
    return grey, scale


# One SIFT object per thread: OpenCV does not promise that sharing one is safe.
_local = threading.local()


def keypoints(grey: np.ndarray, enlarged: bool) -> tuple[np.ndarray, np.ndarray]:
    """(positions (n, 2) float32 in work-copy pixels, RootSIFT descriptors (n, 128) float32).
    `enlarged`: the work copy was made larger than the photo (work_copy's scale > 1)."""
    if getattr(_local, "sift", None) is None:
        # A low contrast threshold: copied regions are often smooth (sky, grass, walls).
        # (0.02 -> 0.01: CASIA training copy-moves found 69% -> 72%, no more false pairs.)
        _local.sift = cv2.SIFT_create(
            nfeatures=MAX_KEYPOINTS, nOctaveLayers=OCTAVE_LAYERS, contrastThreshold=0.01
        )
    # OpenCV's SIFT doubles its input for the first octave. A work copy shrunk from a large
    # photo is given at half size: its finest scale is then the work copy's own, at a quarter
    # of the cost (a 12-megapixel photo: 114 ms instead of 380 ms; false pairs on camera photos
    # 1.8% -> 0%); a mid-size photo's at SIFT_MIN_SIDE. A small photo's enlarged work copy
    # is given whole: the finer scales find small copied regions (CASIA validation
    # copy-moves caught 53% -> 62%) where decoding costs nothing anyway.
    side = max(grey.shape)
    if enlarged or side <= SIFT_MIN_SIDE:
        image, factor = grey, 1.0
    elif side // 2 >= SIFT_MIN_SIDE:
        size = (max(1, grey.shape[1] // 2), max(1, grey.shape[0] // 2))
        image, factor = cv2.resize(grey, size, interpolation=cv2.INTER_AREA), 2.0
    else:  # a mid-size photo (1.7.0)
        factor = side / SIFT_MIN_SIDE
        size = (max(1, round(grey.shape[1] / factor)), max(1, round(grey.shape[0] / factor)))
        image = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    points, descriptors = _local.sift.detectAndCompute(image, None)
    if descriptors is None or len(points) < 2:
        return np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32)
    # RootSIFT (Arandjelovic & Zisserman 2012): Hellinger distance, better ratio tests.
    descriptors = descriptors / (descriptors.sum(axis=1, keepdims=True) + 1e-7)
    descriptors = np.sqrt(descriptors).astype(np.float32)
    # Back to work-copy pixels (a shrunk copy's pixel centre sits between full-size ones).
    positions = np.array([p.pt for p in points], dtype=np.float32) * factor + (factor - 1) / 2
    return positions, descriptors


def matched_pairs(positions: np.ndarray, descriptors: np.ndarray, min_offset: float) -> np.ndarray:
    """(m, 2) index pairs i < j that pass g2NN and are at least `min_offset` pixels apart."""
    n = len(positions)
    if n < 3:
        return np.zeros((0, 2), np.int64)
    # RootSIFT descriptors have unit length: squared distance = 2 - 2 * dot product. One matrix
    # product is several times faster than OpenCV's brute-force knnMatch here.
    similarity = descriptors @ descriptors.T
    np.fill_diagonal(similarity, -1.0)
    # g2NN accepts nothing from a row whose nearest neighbour fails the ratio against the
    # second: most rows. Two row maxima find those cheaply; only the rest are partially sorted
    # (argpartition over every row was half of copy-move's time). Same pairs as before.
    rows = np.arange(n)
    best_at = similarity.argmax(axis=1)
    best = similarity[rows, best_at]
    similarity[rows, best_at] = -np.inf
    second = similarity.max(axis=1)
    similarity[rows, best_at] = best
    d1, d2 = (np.sqrt(np.maximum(2.0 - 2.0 * v, 0)) for v in (best, second))
    candidates = np.flatnonzero(d1 < G2NN_RATIO * np.maximum(d2, 1e-6))
    if len(candidates) == 0:
        return np.zeros((0, 2), np.int64)
    similarity = similarity[candidates]
    # Keypoints at (almost) the same spot (one point, two orientations) are not a copy.
    k = min(NEIGHBOURS, n - 1)
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    near_sim = np.take_along_axis(similarity, nearest, axis=1)
    order = np.argsort(-near_sim, axis=1)
    nearest = np.take_along_axis(nearest, order, axis=1)
    distance = np.sqrt(np.maximum(2.0 - 2.0 * np.take_along_axis(near_sim, order, axis=1), 0))
    # g2NN: accept neighbours 1..i while d_i / d_(i+1) < ratio holds for each of them.
    passes = distance[:, :-1] < G2NN_RATIO * np.maximum(distance[:, 1:], 1e-6)
    accepted = np.cumprod(passes, axis=1).astype(bool)
    rows, cols = np.nonzero(accepted)
    i, j = candidates[rows], nearest[rows, cols]
    apart = np.hypot(*(positions[i] - positions[j]).T) >= min_offset
    low, high = np.minimum(i[apart], j[apart]), np.maximum(i[apart], j[apart])
    # Each pair once, in (i, j) order: as one number each, unique in one pass (np.unique
    # over rows took 0.8 ms a photo, a twentieth of the matching).
    code = np.unique(low.astype(np.int64) * n + high)
    return np.stack(np.divmod(code, n), axis=1)


def _is_plausible(transform: np.ndarray) -> bool:
    """An affine a copy could be: scale within 1/2..2 on each axis, not a mirror-shear wreck."""
    singular = np.linalg.svd(transform[:, :2], compute_uv=False)
    return bool(singular.min() > 0.5 and singular.max() < 2.0)


def repetition(
    transform: np.ndarray, positions: np.ndarray, descriptors: np.ndarray, oriented: np.ndarray
) -> float:
    """Share of a region pair's source keypoints that have a lookalike one step further on
    (the transform applied twice) or one step back (its inverse). A periodic structure (a
    facade, a fence, a line of text) repeats at both; a copied patch exists once."""
    inverse = cv2.invertAffineTransform(transform)
    sources = positions[oriented[:, 0]]
    found = np.zeros(len(sources), bool)
    for step in (transform, inverse):
        target = sources @ step[:, :2].T + step[:, 2]
        if step is transform:
            target = target @ step[:, :2].T + step[:, 2]
        distance = np.hypot(
            target[:, None, 0] - positions[None, :, 0], target[:, None, 1] - positions[None, :, 1]
        )
        nearest = distance.argmin(axis=1)
        close = distance[np.arange(len(sources)), nearest] < 2 * RANSAC_PIXELS
        alike = (descriptors[oriented[:, 0]] * descriptors[nearest]).sum(axis=1) > 0.85
        found |= close & alike
    return float(found.mean())


def dense_match(
    grey: np.ndarray, transform: np.ndarray, copy: np.ndarray
) -> tuple[float, np.ndarray]:
    """(share of textured pixels inside the copy's keypoint hull that the moved source
    reproduces, 0/1 uint8 mask of those pixels). A copy reproduces its source pixel for pixel
    (but for compression); two lookalike windows or letters do only roughly."""
    h, w = grey.shape
    reach = max(5, int(0.02 * np.hypot(h, w)))
    # Only the hull grown by `reach` is read, so the work is done on a window around it (the
    # checks of periodic_harmonics and block_pairs call this up to 20 times per photo; on the
    # whole work copy it was a third of a 12 MP photo's cost). The window keeps a margin past
    # the grown hull wider than the 7-pixel blur reads, so every pixel inside the hull gets
    # what the whole copy would give it.
    corners = copy.astype(np.int32)
    margin = reach + 8
    left, top = np.maximum(corners.min(axis=0) - margin, 0)
    right, bottom = np.minimum(corners.max(axis=0) + margin + 1, (w, h))
    mask = np.zeros((h, w), np.uint8)
    if right <= left or bottom <= top:
        return 0.0, mask  # the copy lies outside the picture
    image = grey[top:bottom, left:right].astype(np.float32)
    # moved(x) = image(T^-1 x): the source carried onto the copy, in window coordinates,
    # read from the part of the picture the window's corners come from (2 pixels more for
    # the interpolation; cut only where the picture goes on, so its edges stay edges).
    inverse = cv2.invertAffineTransform(transform)
    inverse[:, 2] += inverse[:, :2] @ np.array([left, top], np.float64)
    window_corners = np.array(
        [[0, 0], [right - left, 0], [0, bottom - top], [right - left, bottom - top]], np.float64
    )
    reached = window_corners @ inverse[:, :2].T + inverse[:, 2]
    src_left, src_top = np.clip(np.floor(reached.min(axis=0)).astype(int) - 2, 0, (w, h))
    src_right, src_bottom = np.clip(np.ceil(reached.max(axis=0)).astype(int) + 3, 0, (w, h))
    if src_right <= src_left or src_bottom <= src_top:
        src_left, src_top, src_right, src_bottom = 0, 0, 1, 1  # all outside: border only
    inverse[:, 2] -= (src_left, src_top)
    moved = cv2.warpAffine(
        grey[src_top:src_bottom, src_left:src_right].astype(np.float32),
        inverse,
        (int(right - left), int(bottom - top)),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=-1000,
    )
    window = 7
    difference = cv2.blur(np.abs(image - moved), (window, window))
    mean = cv2.blur(image, (window, window))
    texture = np.sqrt(np.maximum(cv2.blur(image * image, (window, window)) - mean * mean, 0))
    hull = np.zeros(image.shape, np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(corners - np.array([left, top], np.int32)), 1)
    hull = cv2.dilate(hull, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (reach, reach))) > 0
    textured = hull & (texture > 4.0)
    alike = textured & (difference < np.maximum(5.0, 0.35 * texture))
    share = float(alike.sum() / max(textured.sum(), 1))
    mask[top:bottom, left:right] = alike
    return share, mask


def region_pairs(grey: np.ndarray, scale: float) -> list[RegionPair]:
    """The verified copied-region pairs of a work copy (`scale`: work_copy's), most inliers
    first."""
    positions, descriptors = keypoints(grey, enlarged=scale > 1)
    diagonal = float(np.hypot(*grey.shape))
    pairs = matched_pairs(positions, descriptors, MIN_OFFSET * diagonal)
    found: list[RegionPair] = []
    cv2.setRNGSeed(20261125)  # RANSAC draws samples: the same image gets the same score
    while len(pairs) >= MIN_INLIERS and len(found) < MAX_MODELS:
        # Each pair in both directions: whichever way round a copy's pairs were listed, one
        # direction of each fits the copy's transform (and the other its inverse).
        src = np.concatenate([positions[pairs[:, 0]], positions[pairs[:, 1]]])
        dst = np.concatenate([positions[pairs[:, 1]], positions[pairs[:, 0]]])
        transform, inlier = cv2.estimateAffine2D(
            src,
            dst,
            method=cv2.RANSAC,
            ransacReprojThreshold=RANSAC_PIXELS,
            maxIters=4000,
            confidence=0.995,
        )
        if transform is None:
            break
        inlier = inlier.ravel().astype(bool)
        forward, backward = inlier[: len(pairs)], inlier[len(pairs) :]
        taken = forward | backward
        if taken.sum() < MIN_INLIERS:
            break
        # Orient every inlier pair as source -> copy under `transform`.
        oriented = np.where(forward[:, None], pairs, pairs[:, ::-1])[taken]
        remaining = pairs[~taken]
        centres = positions[oriented[:, 1]].mean(axis=0) - positions[oriented[:, 0]].mean(axis=0)
        apart = float(np.hypot(*centres)) / diagonal
        if _is_plausible(transform) and apart >= MIN_OFFSET:
            source, copy = positions[oriented[:, 0]], positions[oriented[:, 1]]
            share, reproduced = dense_match(grey, transform, copy)
            repeats = repetition(transform, positions, descriptors, oriented)
            # Since 1.8.0 also by pixels, as the blocks' pairs: the keypoint test misses a
            # row of windows under perspective, whose step drifts (a facade flagged by 1.7.0).
            if repeats < PERIODIC and repeats_again(grey, transform, source, copy, share):
                repeats = 1.0
            found.append(RegionPair(transform, source, copy, repeats, share, reproduced))
        pairs = remaining
    found += block_pairs(grey, scale, found)
    return sorted(periodic_harmonics(grey, found), key=lambda r: -r.inliers)


def periodic_harmonics(grey: np.ndarray, found: list[RegionPair]) -> list[RegionPair]:
    """`found`, where a pair whose copy also repeats at a shorter step is marked as repeating.
    Lines of text (and rows of windows) repeat at their period; pairs closer than MIN_OFFSET
    are never formed and a pair at the period itself is dismissed by `repetition`, but the
    same lines also match several periods apart, and there the repetition test looks one
    whole step further on, past the end of the text block: alone, such a pair looked like a
    copy (6 of 48 screenshots of text flagged by copy-move 1.5.0, each by such a multiple).
    The shorter steps: every periodic pair's, and a translation's own step divided by 2..16.
    A cloned object does not repeat at a fraction of its offset, nor at another pair's step
    unless that pair is itself periodic (a second copy of a clone is not)."""
    periodic = [p.transform for p in found if p.repeats >= PERIODIC]
    periodic += [cv2.invertAffineTransform(t) for t in periodic]
    out = []
    for pair in found:
        steps = list(periodic)
        shift = pair.transform[:, 2]
        if np.allclose(pair.transform[:, :2], np.eye(2), atol=0.05):
            parts = [k for k in range(2, 17) if np.hypot(*shift) / k >= 4]
            steps += [_translation(shift / k) for k in parts]
        if pair.repeats < PERIODIC and steps:
            again = max(dense_match(grey, step, pair.copy)[0] for step in steps)
            if again >= 0.5 * pair.dense:
                pair = replace(pair, repeats=1.0)
        out.append(pair)
    return out


def repeats_again(
    grey: np.ndarray, transform: np.ndarray, source: np.ndarray, copy: np.ndarray, share: float
) -> bool:
    """Whether the pair's pixels repeat a third time, one step further on (the copy carried
    onto where the transform takes it) or one step back (the region the source came from
    carried onto the source), at least half as well as the pair itself: a periodic structure
    (tiles, a fence, a row of windows), which a clone is not."""
    further = (copy @ transform[:, :2].T + transform[:, 2]).astype(np.float32)
    again = max(dense_match(grey, transform, further)[0], dense_match(grey, transform, source)[0])
    return again >= 0.5 * share


def _translation(offset: np.ndarray) -> np.ndarray:
    return np.array([[1.0, 0.0, offset[0]], [0.0, 1.0, offset[1]]])


def block_pairs(grey: np.ndarray, work_scale: float, found: list[RegionPair]) -> list[RegionPair]:
    """Region pairs that blocks.py finds in a work copy (`work_scale`: work_copy's) and the
    SIFT pairs `found` do not already give: moved copies of regions with too few keypoints.
    `inliers` counts blocks."""
    small, scale = blocks.search_copy(grey, work_scale)
    min_offset = MIN_OFFSET * float(np.hypot(*small.shape))
    pairs = []
    for offset, corners in blocks.shared_offsets(small, min_offset):
        shift = offset / scale  # work-copy pixels
        known = any(
            np.allclose(p.transform[:, :2], np.eye(2), atol=0.05)
            and min(np.hypot(*(p.transform[:, 2] - shift)), np.hypot(*(p.transform[:, 2] + shift)))
            < 2 * RANSAC_PIXELS
            for p in found
        )
        if known:
            continue
        # A first look on the small copy (about 1 ms): most offsets that many lookalike
        # blocks share are smooth surfaces whose pixels do not repeat; they stop here.
        small_copy = (corners + blocks.BLOCK / 2).astype(np.float32)
        if dense_match(small, _translation(offset), small_copy)[0] < blocks.MIN_MATCH / 2:
            continue
        copy = small_copy / scale
        source = copy - shift.astype(np.float32)
        share, reproduced = dense_match(grey, _translation(shift), copy)
        if share < blocks.MIN_MATCH:
            continue
        repeats = 1.0 if repeats_again(grey, _translation(shift), source, copy, share) else 0.0
        pairs.append(RegionPair(_translation(shift), source, copy, repeats, share, reproduced))
    return pairs


def copied_mask(pair: RegionPair) -> np.ndarray:
    """uint8 0/1 mask (work-copy size) of both regions of a pair: the copy's pixels that the
    moved source reproduces, and the source pixels they came from."""
    h, w = pair.reproduced.shape
    copy = pair.reproduced
    # Fill the gaps left by flat pixels inside the copied region (no texture, no verdict).
    copy = cv2.morphologyEx(copy, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    inverse = cv2.invertAffineTransform(pair.transform)
    source = cv2.warpAffine(copy, inverse, (w, h), flags=cv2.INTER_NEAREST)
    return np.maximum(copy, source)
