"""Training patches: reproducible, in [0, 1], shaped [B, C, p, p], and converted to the channel count."""

from __future__ import annotations

import torch

from nested_inverse.priors.patches import PatchSampler, luma


def test_patch_sampler_is_reproducible():
    imgs = [torch.randint(0, 256, (3, 40, 30), dtype=torch.uint8), torch.randint(0, 256, (1, 20, 20),
                                                                                 dtype=torch.uint8)]
    sampler = PatchSampler(imgs, 16, 3, (1.0, 0.5), channel_permute=True, grayscale_prob=0.5)
    a = sampler(12, torch.Generator().manual_seed(0))
    b = sampler(12, torch.Generator().manual_seed(0))
    assert a.shape == (12, 3, 16, 16) and torch.equal(a, b)
    assert 0 <= a.min() and a.max() <= 1


def test_colour_images_give_one_channel_patches():
    """channels=1 on a colour image: luma patches, not empty crops."""
    img = torch.randint(0, 256, (3, 40, 30), dtype=torch.uint8)
    sampler = PatchSampler([img], 16, 1, (1.0,), channel_permute=False, grayscale_prob=0.0)
    assert sampler.images[0].shape == (1, 40, 30)
    torch.testing.assert_close(sampler.images[0].float(), luma(img.float()[None])[0].round())
    assert sampler(5, torch.Generator().manual_seed(1)).shape == (5, 1, 16, 16)


def test_gray_images_are_repeated_for_three_channels():
    img = torch.randint(0, 256, (1, 20, 20), dtype=torch.uint8)
    sampler = PatchSampler([img], 8, 3, (1.0,), channel_permute=False, grayscale_prob=0.0)
    x = sampler(3, torch.Generator().manual_seed(2))
    assert x.shape == (3, 3, 8, 8) and torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])


def test_luma_weights():
    x = torch.eye(3).view(3, 3, 1, 1)  # pure R, G, B
    torch.testing.assert_close(luma(x).flatten(), torch.tensor([0.299, 0.587, 0.114]))
