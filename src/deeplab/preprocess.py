"""Caffe input convention of the released DeepLab nets: BGR, 0-255, minus the ImageNet mean."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

CAFFE_MEAN_BGR = (104.008, 116.669, 122.675)


@dataclass(frozen=True)
class Preprocess:
    """How an RGB uint8 image becomes network input. Stored in every checkpoint.

    mean: per-channel mean in the network's channel order, 0-255 units.
    bgr: reverse RGB to BGR (Caffe); scale: multiply after mean subtraction.
    """

    mean: tuple[float, float, float] = CAFFE_MEAN_BGR
    bgr: bool = True
    scale: float = 1.0

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """image: (H, W, 3) uint8 RGB -> (3, H, W) float32 network input."""
        x = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)  # copy: any strides, writable
        if self.bgr:
            x = x.flip(0)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        return (x - mean) * self.scale

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "bgr": self.bgr, "scale": self.scale}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        m = [float(v) for v in d["mean"]]
        return cls(mean=(m[0], m[1], m[2]), bgr=bool(d["bgr"]), scale=float(d.get("scale", 1.0)))

    def fill_value(self) -> tuple[float, float, float]:
        """RGB 0-255 pixel value that maps to zero input (crop padding with the mean)."""
        m = self.mean[::-1] if self.bgr else self.mean
        return float(m[0]), float(m[1]), float(m[2])
