"""The tampering detectors that survive a re-save (issue 11): copy-move by keypoint matching and
the splicing network, on real photos from ../shared/data, through the real scanner."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from export import data
from export.torch_legacy import load_state_dict
from scanner.config import Settings
from scanner.evaluate import evaluate
from scanner.imaging import Sample, decode
from scanner.pipeline import Pipeline
from scanner.store import Database, tables
from scanner_plugins.copy_move import CopyMove
from scanner_plugins.splicing import Splicing

needs_data = pytest.mark.skipif(not data.DATA.is_dir(), reason=f"needs {data.DATA}")
KODAK = data.DATA / "real_lossless" / "real"
SOURCE = (304, 196, 464, 316)  # left, top, right, bottom of the copied block in kodim05
TARGET = (20, 20)  # where its top-left corner lands


@pytest.fixture(scope="module")
def copy_move():
    detector = CopyMove()
    detector.load()
    return detector


def jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def judge(detector, raw: bytes):
    rgb, fmt = decode(raw)
    return detector.predict([Sample("photo.jpg", "", raw, rgb, fmt)])[0]


def cloned(photo: Image.Image) -> Image.Image:
    forged = photo.copy()
    forged.paste(photo.crop(SOURCE), TARGET)
    return forged


def covered(heatmap: np.ndarray, box: tuple[int, int, int, int]) -> float:
    left, top, right, bottom = box
    return float((heatmap[top:bottom, left:right] >= 0.5).mean())


@needs_data
def test_a_cloned_region_resaved_at_q80_is_flagged_and_both_regions_marked(copy_move):
    photo = Image.open(KODAK / "kodim05.png").convert("RGB")
    result = judge(copy_move, jpeg(cloned(photo), 80))
    assert result.label == "fake", result
    assert result.heatmap.shape == (photo.height, photo.width)
    w, h = SOURCE[2] - SOURCE[0], SOURCE[3] - SOURCE[1]
    assert covered(result.heatmap, SOURCE) > 0.5
    assert covered(result.heatmap, (*TARGET, TARGET[0] + w, TARGET[1] + h)) > 0.5
    # Little is marked outside the two regions.
    outside = result.heatmap >= 0.5
    outside[SOURCE[1] : SOURCE[3], SOURCE[0] : SOURCE[2]] = False
    outside[TARGET[1] : TARGET[1] + h, TARGET[0] : TARGET[0] + w] = False
    assert outside.mean() < 0.02
    region = max(result.details["regions"], key=lambda r: r["inliers"])
    lefts = sorted(box[0] for box in region["boxes"])
    assert abs(lefts[0] - TARGET[0]) < 30 and abs(lefts[1] - SOURCE[0]) < 30, region


@needs_data
def test_the_same_photo_untouched_and_resaved_is_not_flagged(copy_move):
    photo = Image.open(KODAK / "kodim05.png").convert("RGB")
    result = judge(copy_move, jpeg(photo, 80))
    assert result.label == "real", result.details
    assert result.heatmap is None  # nothing to mark: no blank picture stored


@needs_data
def test_a_rotated_and_scaled_clone_is_found(copy_move):
    photo = Image.open(KODAK / "kodim05.png").convert("RGB")
    block = photo.crop(SOURCE).rotate(20, expand=False, resample=Image.Resampling.BICUBIC)
    block = block.resize((round(block.width * 1.15), round(block.height * 1.15)))
    forged = photo.copy()
    forged.paste(block, TARGET)
    assert judge(copy_move, jpeg(forged, 85)).label == "fake"


@needs_data
def test_a_small_clone_in_a_mid_size_photo_is_found(copy_move):
    # 768x512: before 1.7.0 SIFT searched such a photo at half its size (384 px), coarser
    # than CASIA's 384x256 photos get (enlarged to 576), and missed this 120x96 clone (2.9%
    # of the picture; 1.6.1 scored it 0.121, its score with no pair); at 512 px it is found.
    photo = Image.open(KODAK / "kodim13.png").convert("RGB")
    forged = photo.copy()
    forged.paste(photo.crop((113, 338, 233, 434)), (420, 379))
    assert judge(copy_move, jpeg(forged, 85)).label == "fake"


@needs_data
def test_a_small_moved_clone_in_a_large_photo_is_found(copy_move):
    # A 218x207 region (1.5% of a 2160x1440 camera photo) moved. Before 1.9.0 the blocks
    # searched every photo at 384 px, where this region is 39x37 px: too few blocks, and SIFT
    # finds no pair either (1.8.0 scored it as a photo without any pair). At 768 px it is found.
    photo = Image.open(data.DATA / "camera_photos" / "real" / "Kodak_DX4330.jpg").convert("RGB")
    forged = photo.copy()
    forged.paste(photo.crop((1896, 390, 2114, 597)), (789, 596))
    assert judge(copy_move, jpeg(photo, 90)).label == "real"
    assert judge(copy_move, jpeg(forged, 90)).label == "fake"


@needs_data
def test_a_row_of_windows_under_perspective_is_not_a_copy(copy_move):
    # kodim08: 1.7.0 matched a row of windows with its neighbours (an affine of scale 0.93;
    # the keypoints one step further on drift with the perspective and did not mark it
    # periodic). Since 1.8.0 the pixels one step further on do.
    photo = Image.open(KODAK / "kodim08.png").convert("RGB")
    result = judge(copy_move, jpeg(photo, 95))
    assert result.label == "real", result.details


@needs_data
def test_copy_move_separates_casia_copy_moves_after_a_resave(tmp_path, copy_move):
    val = [i for i in data.casia() if i["split"] == "validation"]
    fakes = [i for i in val if Path(i["path"]).name.startswith("Sp_S")][:30]
    reals = [i for i in val if i["label"] == 0][:30]
    items = []
    for item in fakes + reals:
        target = tmp_path / Path(item["path"]).name
        target.write_bytes(jpeg(decode(Path(item["path"]).read_bytes())[0], 85))
        items.append((str(target), item["label"]))
    metrics = evaluate(items, [copy_move])["copy-move"]
    # On all 58 validation copy-moves re-saved at q85: TPR 0.62, FPR 0.009 against the 117
    # authentic photos (1.6.0 to 1.9.0; MODEL_CARD.md). The floors here leave room for a sample.
    assert metrics.tpr >= 0.25 and metrics.fpr <= 0.05, metrics
    assert metrics.roc_auc >= 0.65, metrics


@needs_data
def test_a_default_scan_stores_the_copy_move_verdict_with_its_regions(tmp_path):
    photo = Image.open(KODAK / "kodim05.png").convert("RGB")
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "forged.jpg").write_bytes(jpeg(cloned(photo), 80))
    db = Database(f"sqlite:///{tmp_path / 'scan.db'}")
    detector = CopyMove()
    detector.load()
    Pipeline(db, [detector], Settings()).scan([str(folder / "forged.jpg")])
    with db.read() as conn:
        (verdict,) = list(conn.execute(select(tables.verdicts)))
    assert verdict.label == "fake" and verdict.heatmap_png
    assert json.loads(verdict.details)["regions"][0]["inliers"] >= 10
    heatmap = Image.open(io.BytesIO(verdict.heatmap_png))
    assert heatmap.size == photo.size


def test_the_legacy_pytorch_reader_reads_what_torch_wrote(tmp_path):
    """A file in the legacy format, written byte by byte as torch.save(...,
    _use_new_zipfile_serialization=False) lays it out: two tensors sharing one storage, one
    of them a strided view."""
    import pickle
    import struct

    storage = np.arange(12, dtype=np.float32)

    class Persistent(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", FloatStorage, "0", "cpu", 12) if obj is storage else None

    class FloatStorage:  # pickled by reference as torch.FloatStorage
        __module__, __qualname__ = "torch", "FloatStorage"

    def rebuild():  # stands for torch._utils._rebuild_tensor_v2
        pass

    rebuild.__module__, rebuild.__qualname__ = "torch._utils", "_rebuild_tensor_v2"

    class Tensor:
        def __init__(self, offset, size, stride):
            self.args = (storage, offset, size, stride, False, {})

        def __reduce__(self):
            return rebuild, self.args

    import collections

    state = collections.OrderedDict(
        [("a.weight", Tensor(0, (3, 4), (4, 1))), ("b.bias", Tensor(2, (2, 2), (1, 4)))]
    )
    path = tmp_path / "legacy.pth"
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)
        import sys

        sys.modules.setdefault("torch._utils", type(sys)("torch._utils"))
        sys.modules["torch._utils"]._rebuild_tensor_v2 = rebuild
        sys.modules.setdefault("torch", type(sys)("torch")).FloatStorage = FloatStorage
        try:
            Persistent(f, protocol=2).dump(state)
        finally:
            del sys.modules["torch._utils"], sys.modules["torch"]
        pickle.dump(["0"], f, protocol=2)
        f.write(struct.pack("<q", 12) + storage.tobytes())
    loaded = load_state_dict(path)
    assert list(loaded) == ["a.weight", "b.bias"]
    np.testing.assert_array_equal(loaded["a.weight"], storage.reshape(3, 4))
    np.testing.assert_array_equal(loaded["b.bias"], [[2, 6], [3, 7]])


@pytest.fixture(scope="module")
def splicing():
    detector = Splicing()
    detector.load()
    return detector


@needs_data
def test_splicing_separates_resaved_casia_validation_images(tmp_path, splicing):
    val = [i for i in data.casia() if i["split"] == "validation"]
    items = []
    for label in (1, 0):
        for item in [i for i in val if i["label"] == label][:40]:
            target = tmp_path / Path(item["path"]).name
            target.write_bytes(jpeg(decode(Path(item["path"]).read_bytes())[0], 85))
            items.append((str(target), label))
    metrics = evaluate(items, [splicing])["splicing"]
    # 0.69 on this sample, 0.66 on the whole validation split (MODEL_CARD.md): weak, but a
    # broken model or input (0.5) fails.
    assert metrics.roc_auc >= 0.60, metrics


@needs_data
def test_splicing_heatmap_is_at_image_resolution(splicing):
    raw = (data.DATA / "camera_photos" / "real").glob("*.jpg").__next__().read_bytes()
    rgb, _ = decode(raw)
    result = judge(splicing, raw)
    assert result.heatmap.shape == (rgb.height, rgb.width)
    assert result.heatmap.min() >= 0 and result.heatmap.max() <= 1


def test_g2nn_matching_finds_what_a_full_sort_of_every_row_finds():
    """matched_pairs sorts only the rows whose nearest neighbour passes the ratio test; the
    pairs must be those of the textbook procedure (every row's neighbours fully sorted)."""
    from scanner_plugins.copy_move.matching import G2NN_RATIO, NEIGHBOURS, matched_pairs

    rng = np.random.default_rng(3)
    base = rng.normal(size=(400, 128)).astype(np.float32)
    copies = base[:60] + rng.normal(scale=0.05, size=(60, 128)).astype(np.float32)
    descriptors = np.concatenate([base, copies, copies[:20] + 0.01])
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    positions = rng.uniform(0, 500, (len(descriptors), 2)).astype(np.float32)

    similarity = descriptors @ descriptors.T
    np.fill_diagonal(similarity, -1.0)
    order = np.argsort(-similarity, axis=1)[:, :NEIGHBOURS]
    distance = np.sqrt(np.maximum(2 - 2 * np.take_along_axis(similarity, order, axis=1), 0))
    passes = distance[:, :-1] < G2NN_RATIO * np.maximum(distance[:, 1:], 1e-6)
    rows, cols = np.nonzero(np.cumprod(passes, axis=1).astype(bool))
    i, j = rows, order[rows, cols]
    apart = np.hypot(*(positions[i] - positions[j]).T) >= 20.0
    expected = np.unique(np.sort(np.stack([i[apart], j[apart]], axis=1), axis=1), axis=0)

    got = matched_pairs(positions, descriptors, 20.0)
    assert len(expected) >= 60
    np.testing.assert_array_equal(got, expected)
