"""Image I/O: files, conversions between PIL / numpy / tensors, ranges, crops, bundled images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import nested_inverse
from nested_inverse.imageio import (
    bundled_image,
    bundled_image_names,
    center_crop,
    crop_to_multiple,
    from_model_range,
    from_tensor,
    heldout_image,
    heldout_image_names,
    load_image,
    save_image,
    to_model_range,
    to_tensor,
)


def random_uint8(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def test_save_load_round_trip_is_exact_on_8_bit_values(tmp_path):
    arr = random_uint8((1, 3, 9, 7))
    x = torch.from_numpy(arr).float() / 255
    out = save_image(x, tmp_path / "sub" / "a.png")
    assert out.exists() and out.parent.name == "sub"
    y = load_image(out)
    assert y.shape == (1, 3, 9, 7) and y.dtype == torch.float32
    assert torch.equal(y, x)
    # [C, H, W] works too; no temporary files are left behind.
    save_image(x[0], tmp_path / "b.png")
    assert torch.equal(load_image(tmp_path / "b.png"), x)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.png", "sub"]


def test_save_clamps_and_grayscale(tmp_path):
    x = torch.tensor([[[[-1.0, 0.5, 2.0]]]])  # [1, 1, 1, 3]
    save_image(x, tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").mode == "L"
    y = load_image(tmp_path / "g.png", mode="L")
    assert y.shape == (1, 1, 1, 3)
    torch.testing.assert_close(y, torch.tensor([[[[0.0, 128 / 255, 1.0]]]]))
    assert load_image(tmp_path / "g.png").shape == (1, 3, 1, 3)  # RGB by default
    assert load_image(tmp_path / "g.png", mode=None).shape == (1, 1, 1, 3)


def test_save_rejects_batches(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        save_image(torch.zeros(2, 3, 4, 4), tmp_path / "x.png")


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="notes.txt"):
        load_image(tmp_path / "notes.txt")
    save_image(torch.rand(3, 8, 8), tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes((tmp_path / "ok.png").read_bytes()[:40])
    with pytest.raises(ValueError, match="broken.png"):
        load_image(tmp_path / "broken.png")
    with pytest.raises(ValueError, match="folder"):
        load_image(tmp_path)
    with pytest.raises(ValueError, match="mode"):
        load_image(tmp_path / "ok.png", mode="CMYK")


def test_16_bit_images(tmp_path):
    arr = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    x = load_image(tmp_path / "deep.png", mode=None)
    torch.testing.assert_close(x[0, 0], torch.from_numpy(arr.astype(np.float32) / 65535))


@pytest.mark.parametrize(
    "make",
    [
        lambda a: Image.fromarray(a),  # PIL RGB
        lambda a: Image.fromarray(a[..., 0]),  # PIL L
        lambda a: a,  # numpy HWC uint8
        lambda a: a[..., 0],  # numpy HW uint8
        lambda a: a.astype(np.float32) / 255,  # numpy float
        lambda a: a[None],  # numpy NHWC
        lambda a: torch.from_numpy(a).permute(2, 0, 1).contiguous(),  # tensor CHW uint8
        lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].double() / 255,  # tensor BCHW float64
        lambda a: torch.from_numpy(a[..., 0]).float() / 255,  # tensor HW
    ],
)
def test_to_tensor_from_tensor_round_trip(make):
    a = random_uint8((5, 6, 3), seed=1)
    img = make(a)
    x = to_tensor(img)
    assert x.dim() == 4 and x.is_floating_point()
    assert 0 <= x.min() and x.max() <= 1
    back = from_tensor(x, img)
    assert type(back) is type(img)
    if isinstance(img, Image.Image):
        assert back.mode == img.mode and np.array_equal(np.asarray(back), np.asarray(img))
    elif isinstance(img, np.ndarray):
        assert back.dtype == img.dtype and back.shape == img.shape
        np.testing.assert_allclose(back, img, atol=1e-6)
    else:
        assert back.dtype == img.dtype and back.shape == img.shape
        torch.testing.assert_close(back, img)


def test_to_tensor_details():
    rgba = random_uint8((4, 4, 4))
    assert to_tensor(rgba).shape == (1, 3, 4, 4)  # alpha dropped
    assert to_tensor(Image.fromarray(rgba, "RGBA")).shape == (1, 3, 4, 4)
    assert to_tensor(np.ones((2, 2), dtype=bool)).sum() == 4
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    assert to_tensor(x).dtype == torch.float64
    with pytest.raises(ValueError, match="channels-last"):
        to_tensor(np.zeros((3, 8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="int32"):
        to_tensor(np.zeros((8, 8), dtype=np.int32))
    with pytest.raises(ValueError, match="not understood"):
        to_tensor("image.png")


def test_model_range_round_trip():
    x = torch.tensor([0.0, 0.25, 1.0])
    torch.testing.assert_close(to_model_range(x), torch.tensor([-1.0, -0.5, 1.0]))
    torch.testing.assert_close(from_model_range(to_model_range(x)), x)


def test_crops():
    x = torch.arange(7 * 10.0).view(1, 1, 7, 10)
    c = center_crop(x, (3, 4))
    assert c.shape == (1, 1, 3, 4) and c[0, 0, 0, 0] == 2 * 10 + 3
    assert center_crop(x, 5).shape == (1, 1, 5, 5)
    assert crop_to_multiple(x, 4).shape == (1, 1, 4, 8)
    with pytest.raises(ValueError, match="larger"):
        center_crop(x, 8)
    with pytest.raises(ValueError, match="`m`"):
        crop_to_multiple(x, 0)


def test_bundled_images():
    assert bundled_image_names() == ["astronaut", "chelsea", "coffee"]
    full = bundled_image("coffee")
    assert full.shape == (1, 3, 400, 600)
    crop = bundled_image("coffee", size=64)
    assert crop.shape == (1, 3, 64, 64)
    torch.testing.assert_close(crop, full[..., 168:232, 268:332])
    assert bundled_image("chelsea", (30, 40)).shape == (1, 3, 30, 40)
    with pytest.raises(ValueError, match="astronaut"):
        bundled_image("lena")


def test_heldout_images():
    names = heldout_image_names()
    assert names == sorted(names) and len(names) >= 12
    assert not set(names) & set(bundled_image_names())
    for name in names:
        x = heldout_image(name)
        assert x.shape == (1, 3, 128, 128) and x.dtype == torch.float32, name
        assert 0 <= x.min() and x.max() <= 1, name
    full = heldout_image("coffee-spoon")
    crop = heldout_image("coffee-spoon", size=64)
    assert crop.shape == (1, 3, 64, 64) and crop.is_contiguous()
    torch.testing.assert_close(crop, full[..., 32:96, 32:96])
    assert heldout_image("chelsea-eye", (30, 40)).shape == (1, 3, 30, 40)
    with pytest.raises(ValueError, match=r"`name`='astronaut'.*astronaut-face"):
        heldout_image("astronaut")
    with pytest.raises(ValueError, match="larger"):
        heldout_image("coffee-spoon", size=256)


def test_heldout_images_match_the_readme_boxes():
    # Each crop is the box its README row states, cut from the bundled full image (the same bytes
    # as scikit-image's), and none overlaps the full image's centre 128×128 window.
    from nested_inverse.paths import images_dir

    readme = (images_dir() / "heldout" / "README.md").read_text()
    rows = [line.split("|") for line in readme.splitlines()
            if line.startswith("| `") and "skimage/data/" in line]
    assert sorted(r[1].strip().strip("`")[: -len(".png")] for r in rows) == heldout_image_names()
    for r in rows:
        name = r[1].strip().strip("`")[: -len(".png")]
        source = r[2].strip().strip("`").split("/")[-1][: -len(".png")]
        x, y, size = (int(r[i]) for i in (3, 4, 5))
        full = bundled_image(source)
        torch.testing.assert_close(heldout_image(name), full[..., y : y + size, x : x + size])
        H, W = full.shape[-2:]
        top, left = (H - 128) // 2, (W - 128) // 2
        assert abs(x - left) >= 128 or abs(y - top) >= 128, name


def test_exported():
    for name in ("load_image", "save_image", "to_tensor", "from_tensor", "bundled_image",
                 "heldout_image", "heldout_image_names"):
        assert name in nested_inverse.__all__ and hasattr(nested_inverse, name)


@pytest.mark.parametrize("limit", [15_000, 5_000])  # Pillow warns above the limit, raises above 2×
def test_images_beyond_the_decompression_bomb_limit_are_refused_in_words(tmp_path, monkeypatch, limit):
    from nested_inverse.imageio import ImageTooLarge

    path = tmp_path / "big.png"
    Image.new("RGB", (200, 100)).save(path)  # 20000 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(ImageTooLarge) as info:
        load_image(path)
    text = str(info.value)
    assert f"`path`={str(path)!r} is 20000 pixels (0.0 megapixels)" in text
    assert f"limit of {limit} pixels ({limit / 1e6:.1f} megapixels, PIL.Image.MAX_IMAGE_PIXELS)" in text
    assert "downscale it first" in text
    assert "attack" not in text  # not Pillow's own words
    assert isinstance(info.value, ValueError)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # lifted, as for Pillow itself
    assert load_image(path).shape == (1, 3, 100, 200)
