"""Synthetic splices for training (export/synthetic.py): the two samples of a pair must be the
same picture, through the same final JPEG save, everywhere except around the pasted region."""

import numpy as np
from conftest import photo
from PIL import Image, ImageFilter

from export import synthetic


def test_a_pair_differs_only_where_the_mask_says():
    rng = np.random.default_rng(0)
    for seed in range(6):
        host, donor = photo(seed, (384, 256)), photo(seed + 50, (300, 200))
        authentic, tampered, mask = synthetic.splice_pair(host, donor, rng)
        assert authentic.size == tampered.size == host.size and mask.shape == (256, 384)
        assert 0.005 < mask.mean() < 0.3
        diff = np.abs(np.asarray(authentic, float) - np.asarray(tampered, float)).max(axis=2)
        # JPEG works in 16x16 blocks (with chroma upsampling reaching a little further): well
        # away from the paste, the same pixels through the same save must come out identical.
        near = Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.MaxFilter(65))
        assert (diff[np.asarray(near) == 0] == 0).all()
        assert diff[mask > 0].mean() > 5


def test_an_object_paste_moves_exactly_the_marked_region():
    rng = np.random.default_rng(1)
    host, source = photo(3, (384, 256)), photo(60, (384, 256))
    region = np.zeros((256, 384), np.float32)
    region[40:100, 200:260] = 1  # the "object" of a tampered photo, as its mask marks it
    pasted = None
    while pasted is None:  # a rescale can make the region too large to move: draw again
        pasted = synthetic.object_paste(host, source, region, rng)
    tampered, target = pasted
    assert tampered.size == host.size and target.shape == (256, 384)
    changed = np.abs(np.asarray(tampered, float) - np.asarray(host, float)).max(axis=2) > 0
    # The pasted object, at most feathered by a pixel or two, and nothing else.
    near = Image.fromarray((target * 255).astype(np.uint8)).filter(ImageFilter.MaxFilter(5))
    assert not changed[np.asarray(near) == 0].any()
    assert changed[target > 0].mean() > 0.9
    assert 0.9 * 0.6**2 * 3600 <= target.sum() <= 1.1 * 1.2**2 * 3600  # rescaled 0.6-1.2
    assert synthetic.object_paste(host, source, np.zeros_like(region), rng) is None


def test_a_pair_saved_at_a_given_quality_keeps_the_random_stream():
    """`final` sets the pair's last save; the random numbers drawn after it are the same as
    without it, so recipes that do not pass it make the same pairs as before."""
    from export.training import jpeg_roundtrip

    host, donor = photo(1, (384, 256)), photo(51, (300, 200))
    given, drawn = np.random.default_rng(7), np.random.default_rng(7)
    authentic, _, mask = synthetic.splice_pair(host, donor, given, final=63)
    _, _, same_mask = synthetic.splice_pair(host, donor, drawn)
    assert np.array_equal(np.asarray(authentic), np.asarray(jpeg_roundtrip(host, 63)))
    assert np.array_equal(mask, same_mask) and given.random() == drawn.random()
