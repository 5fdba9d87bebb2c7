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
