import math

import numpy as np
import pytest
from conftest import jpeg_bytes, photo
from PIL import Image
from sample_detectors import NeedsBigImages, Redness

from scanner.evaluate import (
    Metrics,
    evaluate,
    labelled_files,
    rate_interval,
    roc_auc,
    roc_auc_interval,
    tpr_at_fpr,
)


def test_roc_auc_and_tpr_match_hand_computed_values():
    scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    assert roc_auc(scores, labels) == 0.75  # 3 of the 4 fake/real pairs are ordered right
    assert roc_auc([0.5, 0.5], [0, 1]) == 0.5  # a tie counts half
    assert math.isnan(roc_auc([0.2, 0.3], [1, 1]))
    assert tpr_at_fpr(scores, labels, 0.05) == 0.5  # above the highest real: only 0.8
    assert tpr_at_fpr(scores, labels, 0.5) == 1.0
    m = Metrics.compute([0.9, 0.2, 0.7, 0.1], [1, 0, 0, 0], threshold=0.5)
    assert (m.n_fake, m.n_real, m.accuracy, m.roc_auc) == (1, 3, 0.75, 1.0)


def test_the_auc_interval_is_delongs_and_narrows_with_more_images():
    """Against DeLong's variance written out pair by pair: each fake's and each real's share
    of the pairs it wins (ties half), their sample variances over the class sizes."""
    rng = np.random.default_rng(0)
    fake, real = rng.normal(1.0, 1.0, 30).round(1), rng.normal(0.0, 1.0, 40).round(1)
    wins = (fake[:, None] > real[None, :]) + 0.5 * (fake[:, None] == real[None, :])
    auc = wins.mean()
    half = 1.96 * np.sqrt(wins.mean(1).var(ddof=1) / 30 + wins.mean(0).var(ddof=1) / 40)
    scores, labels = np.r_[fake, real], [1] * 30 + [0] * 40
    assert roc_auc(scores, labels) == pytest.approx(auc)
    assert roc_auc_interval(scores, labels) == pytest.approx((auc - half, auc + half))
    many = np.r_[rng.normal(1.0, 1.0, 3000), rng.normal(0.0, 1.0, 4000)]
    low, high = roc_auc_interval(many, [1] * 3000 + [0] * 4000)
    assert high - low < (2 * half) / 5  # 100 times the images: about a tenth as wide
    # Calibrated: over 400 samples of 30 and 40, the true AUC (Phi(1/sqrt 2) = 0.7602) falls
    # inside about 95% of the intervals.
    inside = [
        low <= 0.7602 <= high
        for low, high in (
            roc_auc_interval(np.r_[rng.normal(1, 1, 30), rng.normal(0, 1, 40)], labels)
            for _ in range(400)
        )
    ]
    assert 0.90 <= np.mean(inside) <= 0.98
    assert all(map(math.isnan, roc_auc_interval([0.2, 0.3], [1, 1])))
    m = Metrics.compute(scores, labels, threshold=0.5)
    assert (m.roc_auc_low, m.roc_auc_high) == pytest.approx((auc - half, auc + half))


def test_rate_intervals_are_wilsons_and_cover_the_true_rate():
    """Wilson's score interval against values computed by hand (Newcombe 1998's table gives
    0.2366-0.7634 for 5 of 10), its bounds at 0 and n, and its coverage."""
    assert rate_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    low, high = rate_interval(0, 92)  # "none of 92 real photos flagged"
    assert low == 0.0 and high == pytest.approx(1.96**2 / (92 + 1.96**2))
    assert rate_interval(10, 10)[1] == 1.0 and rate_interval(10, 10)[0] > 0.7
    assert all(map(math.isnan, rate_interval(0, 0)))
    rng = np.random.default_rng(1)
    inside = [
        low <= 0.02 <= high
        for low, high in (rate_interval(k, 200) for k in rng.binomial(200, 0.02, 2000))
    ]
    assert 0.92 <= np.mean(inside) <= 0.99
    m = Metrics.compute([0.9, 0.8, 0.2, 0.7, 0.1, 0.0], [1, 1, 1, 0, 0, 0], threshold=0.5)
    assert (m.tpr, m.fpr) == pytest.approx((2 / 3, 1 / 3))
    assert (m.tpr_low, m.tpr_high) == pytest.approx(rate_interval(2, 3))
    assert (m.fpr_low, m.fpr_high) == pytest.approx(rate_interval(1, 3))


def test_evaluate_scans_a_labelled_folder_through_the_pipeline(tmp_path):
    (tmp_path / "tampered").mkdir()
    (tmp_path / "authentic").mkdir()
    (tmp_path / "ignored").mkdir()
    for i in range(3):
        (tmp_path / "authentic" / f"{i}.jpg").write_bytes(jpeg_bytes(photo(i)))
        Image.new("RGB", (64 + i, 64), (240, 20 * i, 0)).save(tmp_path / "tampered" / f"{i}.png")
    items = labelled_files(str(tmp_path))
    assert sorted(y for _, y in items) == [0, 0, 0, 1, 1, 1]
    result = evaluate(items, [Redness(), NeedsBigImages()])
    red = result["test-red"]
    assert (red.n_fake, red.n_real, red.accuracy, red.roc_auc) == (3, 3, 1.0, 1.0)
    big = result["test-big"]  # the red squares are too small for it
    assert (big.n_fake, big.not_applicable_fake, big.n_real) == (0, 3, 3)


@pytest.mark.parametrize("names", [("fake", "real"), ("df", "real")])
def test_class_folder_names(tmp_path, names):
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.jpg").write_bytes(jpeg_bytes(photo(1)))
    assert sorted(y for _, y in labelled_files(str(tmp_path))) == [0, 1]
