"""Joint image/label transforms for training and evaluation, and the stride-8 training target.

Training (paper: random 321x321 crops, horizontal flips; optional random scaling):
scale by s ~ U(scale_range) (image bilinear, label nearest), pad to the crop size with the mean colour
(image; exactly zero network input) and 255 (label), random crop, random horizontal flip, then the Caffe
mean/BGR convention of ``Preprocess``. Randomness comes only from the generator passed in, so a sample is
reproducible from (seed, epoch, index) -- see ``SeededDataset``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from deeplab.data.base import IGNORE_INDEX
from deeplab.errors import InputError
from deeplab.preprocess import Preprocess

Rng = np.random.Generator | torch.Generator | None


def as_numpy_rng(rng: Rng) -> np.random.Generator:
    """A numpy Generator from a numpy or torch Generator (None: fresh, unseeded)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, torch.Generator):
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=rng)))
    if rng is None:
        return np.random.default_rng()
    raise TypeError(f"rng must be a numpy or torch Generator, got {type(rng).__name__}")


def rescale(image: np.ndarray, label: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Resize image (H, W, 3) uint8 bilinearly and label (H, W) uint8 by nearest neighbour by ``factor``."""
    if factor == 1.0:
        return image, label
    h, w = label.shape
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    img = np.array(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    lab = np.array(Image.fromarray(label).resize(size, Image.Resampling.NEAREST))
    return img, lab


def pad_to(
    image: np.ndarray,
    label: np.ndarray,
    height: int,
    width: int,
    fill: Sequence[float],
    ignore_index: int = IGNORE_INDEX,
) -> tuple[np.ndarray, np.ndarray]:
    """Pad bottom/right to at least (height, width). image -> float32 filled with ``fill`` (RGB); label with ignore."""
    h, w = label.shape
    ph, pw = max(height, h), max(width, w)
    img = np.empty((ph, pw, 3), dtype=np.float32)
    img[...] = np.asarray(fill, dtype=np.float32)
    img[:h, :w] = image
    lab = np.full((ph, pw), ignore_index, dtype=np.uint8)
    lab[:h, :w] = label
    return img, lab


def subsample_labels(label, stride: int = 8):
    """The paper's training target: ground truth subsampled to the stride-8 score map.

    label: (..., H, W) numpy array or tensor -> (..., ceil(H/stride), ceil(W/stride)) = label[..., ::stride, ::stride]
    (321x321 -> 41x41, matching the network's output grid).
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return label[..., ::stride, ::stride]


class TrainTransform:
    """(image (H, W, 3) uint8 RGB, label (H, W) uint8) -> (input (3, c, c) float32, label (c, c) int64).

    crop_size: output side c (321 in the paper). scale_range: (lo, hi) random scale factors; (1, 1) = none.
    flip: random horizontal flip with probability 1/2. preprocess: Caffe BGR mean convention.
    """

    def __init__(
        self,
        crop_size: int = 321,
        scale_range: tuple[float, float] = (1.0, 1.0),
        flip: bool = True,
        preprocess: Preprocess = Preprocess(),
        ignore_index: int = IGNORE_INDEX,
    ):
        if crop_size < 1:
            raise InputError(f"crop_size must be >= 1, got {crop_size}")
        lo, hi = scale_range
        if not 0 < lo <= hi:
            raise InputError(f"scale_range must satisfy 0 < lo <= hi, got {scale_range}")
        self.crop_size = crop_size
        self.scale_range = (float(lo), float(hi))
        self.flip = flip
        self.preprocess = preprocess
        self.ignore_index = ignore_index

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: Rng = None) -> tuple[torch.Tensor, torch.Tensor]:
        rng = as_numpy_rng(rng)
        lo, hi = self.scale_range
        factor = float(rng.uniform(lo, hi)) if hi > lo else lo
        image, label = rescale(image, label, factor)
        c = self.crop_size
        img, lab = pad_to(image, label, c, c, self.preprocess.fill_value(), self.ignore_index)
        y = int(rng.integers(0, img.shape[0] - c + 1))
        x = int(rng.integers(0, img.shape[1] - c + 1))
        img, lab = img[y : y + c, x : x + c], lab[y : y + c, x : x + c]
        if self.flip and rng.random() < 0.5:
            img, lab = img[:, ::-1], lab[:, ::-1]
        img, lab = np.ascontiguousarray(img), np.ascontiguousarray(lab)
        return self.preprocess(img), torch.from_numpy(lab).long()


class EvalTransform:
    """(image, label) -> (input (3, H, W) float32, label (H, W) int64): full image, no augmentation."""

    def __init__(self, preprocess: Preprocess = Preprocess()):
        self.preprocess = preprocess

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: Rng = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.preprocess(image), torch.from_numpy(np.ascontiguousarray(label)).long()


class SeededDataset:
    """A data set whose sample i of epoch e is ``transform(image, label, rng(seed, e, i))``: reproducible with any
    number of DataLoader workers and any sample order."""

    def __init__(self, dataset, transform, seed: int = 0):
        self.dataset = dataset
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        image, label = self.dataset.sample(i)
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        return self.transform(image, label, rng)
