"""Joint train/eval transforms and the stride-8 training target."""

import numpy as np
import pytest
import torch

from deeplab.data.camvid import CAMVID_PALETTE
from deeplab.data.transforms import EvalTransform, SeededDataset, TrainTransform, subsample_labels
from deeplab.preprocess import Preprocess


def _to_rgb(x: torch.Tensor) -> np.ndarray:
    """Invert the Caffe convention: (3, h, w) BGR minus mean -> (h, w, 3) RGB."""
    mean = torch.tensor(Preprocess().mean).view(3, 1, 1)
    return (x + mean).flip(0).permute(1, 2, 0).numpy()


def _blocky(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A label map of 10x10 blocks and an image coloured by label (so alignment is checkable)."""
    rng = np.random.default_rng(seed)
    label = np.kron(rng.integers(0, 11, (h // 10 + 1, w // 10 + 1)), np.ones((10, 10), int))[:h, :w].astype(np.uint8)
    return CAMVID_PALETTE[label], label


@pytest.mark.parametrize("seed", range(6))
def test_train_crop_keeps_image_and_label_aligned(seed):
    image, label = _blocky(360, 480)
    x, y = TrainTransform(crop_size=321)(image, label, np.random.default_rng(seed))
    assert x.shape == (3, 321, 321) and x.dtype == torch.float32
    assert y.shape == (321, 321) and y.dtype == torch.int64
    np.testing.assert_allclose(_to_rgb(x), CAMVID_PALETTE[y.numpy()], atol=1e-4)


def test_small_image_padded_with_mean_and_ignore():
    image, label = _blocky(100, 80)
    x, y = TrainTransform(crop_size=321, flip=False)(image, label, np.random.default_rng(0))
    inside = (y != 255).numpy()
    assert inside.sum() == 100 * 80 and inside[:100, :80].all()
    assert torch.count_nonzero(x[:, ~torch.from_numpy(inside)]) == 0  # mean padding = zero network input


def test_random_scale_and_flip():
    image, label = _blocky(200, 200)
    t = TrainTransform(crop_size=321, scale_range=(0.5, 0.5), flip=False)
    _, y = t(image, label, np.random.default_rng(1))
    assert (y != 255).sum() == 100 * 100
    # flips happen about half the time and keep image and label aligned
    flipped = 0
    for seed in range(20):
        img, lab = _blocky(321, 321, seed=0)
        x, y = TrainTransform(crop_size=321)(img, lab, np.random.default_rng(seed))
        np.testing.assert_allclose(_to_rgb(x), CAMVID_PALETTE[y.numpy()], atol=1e-4)
        flipped += bool((y.numpy() != lab).any())
    assert 4 <= flipped <= 16
    with pytest.raises(ValueError):
        TrainTransform(scale_range=(1.5, 0.5))


def test_reproducible_from_seed_epoch_index():
    class Pairs:
        def __init__(self):
            self.data = [_blocky(300, 400, seed=i) for i in range(3)]

        def __len__(self):
            return 3

        def sample(self, i):
            return self.data[i]

    ds = SeededDataset(Pairs(), TrainTransform(crop_size=161, scale_range=(0.5, 1.5)), seed=7)
    a = ds[2]
    assert all(torch.equal(u, v) for u, v in zip(a, ds[2], strict=False))
    ds.set_epoch(1)
    assert not torch.equal(a[1], ds[2][1])
    t = TrainTransform(crop_size=161, scale_range=(0.5, 1.5))
    img, lab = _blocky(300, 400)
    r1 = t(img, lab, torch.Generator().manual_seed(3))
    r2 = t(img, lab, torch.Generator().manual_seed(3))
    assert torch.equal(r1[0], r2[0]) and torch.equal(r1[1], r2[1])


def test_eval_transform_is_caffe_convention():
    image, label = _blocky(37, 53)
    x, y = EvalTransform()(image, label)
    assert x.shape == (3, 37, 53) and torch.equal(y, torch.from_numpy(label).long())
    np.testing.assert_allclose(x[0].numpy(), image[..., 2] - 104.008, rtol=0, atol=1e-4)  # B first


def test_subsample_labels_stride8_grid():
    label = torch.arange(321 * 321).view(321, 321)
    sub = subsample_labels(label)
    assert sub.shape == (41, 41)  # the 321x321 crop's stride-8 score map
    assert sub[5, 7] == label[40, 56]
    batch = torch.stack([label, label + 1])
    assert subsample_labels(batch).shape == (2, 41, 41)
    assert subsample_labels(np.zeros((513, 513)), 8).shape == (65, 65)
