"""Image discovery and eval preprocessing, checked against torchvision's transforms on real files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from resnest_deploy.calibration.images import find_images, iter_batches, open_rgb, preprocess
from resnest_deploy.errors import ConfigError
from resnest_deploy.models import get_config
from tests.conftest import write_test_images


def _photo(w: int = 97, h: int = 61) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (h // 4, w // 4, 3)).astype(np.uint8)).resize((w, h))


@pytest.mark.parametrize("arch", ["resnet50", "skresnet18"])
def test_resize_then_crop_matches_torchvision(arch):
    cfg = get_config(arch).input
    interp = T.InterpolationMode.BILINEAR if cfg.interpolation == "bilinear" else T.InterpolationMode.BICUBIC
    reference = T.Compose([T.Resize(int(cfg.size / cfg.crop_pct), interpolation=interp), T.CenterCrop(cfg.size),
                           T.ToTensor(), T.Normalize(cfg.mean, cfg.std)])
    for img in (_photo(300, 250), _photo(250, 300)):
        np.testing.assert_allclose(preprocess(img, cfg), reference(img).numpy(), atol=1e-5)


def test_crop_then_resize_matches_official_resnest_transform():
    cfg = get_config("resnest101").input  # 256 px, crop 256/288, bicubic
    img = _photo(400, 300)
    side = cfg.size / (cfg.size + 32) * min(img.size)
    top, left = int(round((img.size[1] - side) / 2)), int(round((img.size[0] - side) / 2))
    cropped = TF.crop(img, top, left, int(round(side)), int(round(side)))
    resized = TF.resize(cropped, [cfg.size, cfg.size], interpolation=T.InterpolationMode.BICUBIC)
    expected = TF.normalize(TF.to_tensor(resized), cfg.mean, cfg.std).numpy()
    np.testing.assert_allclose(preprocess(img, cfg), expected, atol=1e-5)


def test_class_tree_modes_and_corrupt_files(tmp_path):
    root = write_test_images(tmp_path / "data", classes=2, per_class=6)
    images = find_images(root)
    assert images.is_class_tree and images.classes == ("class_0", "class_1")
    assert len(images.files) == 14
    cfg = get_config("resnet18").input
    loaded, skipped = [], []
    for batch in iter_batches(images, cfg, 4):
        loaded.append(batch.array)
        skipped += batch.skipped
    arrays = np.concatenate(loaded)
    assert arrays.shape == (12, 3, 224, 224) and np.isfinite(arrays).all()
    assert sorted(p.name for p, _ in skipped) == ["notes.png", "truncated.png"]


def test_sixteen_bit_images_keep_their_brightness(tmp_path):
    gray8 = np.linspace(0, 255, 64 * 64).reshape(64, 64).astype(np.uint8)
    Image.fromarray(gray8.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    Image.fromarray(gray8).save(tmp_path / "plain.png")
    deep, plain = open_rgb(tmp_path / "deep.png"), open_rgb(tmp_path / "plain.png")
    assert deep.mode == plain.mode == "RGB"
    assert np.abs(np.asarray(deep, int) - np.asarray(plain, int)).max() <= 1


def test_flat_folder_and_errors(tmp_path):
    _photo().save(tmp_path / "a.jpg")
    images = find_images(tmp_path)
    assert not images.is_class_tree and images.labels == (None,)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no image files"):
        find_images(empty)
    with pytest.raises(ConfigError, match="not a folder"):
        find_images(tmp_path / "a.jpg")


def test_preprocessed_batch_feeds_a_model():
    cfg = get_config("resnet18").input
    x = torch.from_numpy(preprocess(_photo(), cfg))[None]
    assert x.shape == (1, *cfg.shape) and abs(float(x.mean())) < 3
