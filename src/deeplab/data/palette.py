"""Label palettes, palette PNG I/O and colour overlays."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from deeplab.data.images import open_image
from deeplab.errors import InputError
from deeplab.io import atomic_write


def voc_palette(n: int = 256) -> np.ndarray:
    """PASCAL VOC colour map (bit-interleaved label index). Returns (n, 3) uint8; 255 -> (224, 224, 192)."""
    idx = np.arange(n)
    rgb = np.zeros((n, 3), dtype=np.uint8)
    for shift in range(8):
        for c in range(3):
            bit = (idx >> (3 * shift + c)) & 1
            rgb[:, c] |= (bit << (7 - shift)).astype(np.uint8)
    return rgb


def full_palette(colors: np.ndarray | list) -> np.ndarray:
    """Pad a (K, 3) class colour list to a 256-entry palette (rest from VOC). Returns (256, 3) uint8."""
    colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    pal = voc_palette(256)
    pal[: len(colors)] = colors
    return pal


def save_label_png(path: str | os.PathLike, labels: np.ndarray, palette: np.ndarray | None = None) -> Path:
    """Write labels (H, W) integer in [0, 255] as a palette ('P' mode) PNG, like VOC SegmentationClass
    (atomically: an interrupted or failed write keeps the previous file)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"labels must be (H, W), got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise InputError(f"labels must lie in [0, 255] for a palette PNG, got [{labels.min()}, {labels.max()}]")
    img = Image.frombytes("P", labels.shape[::-1], np.ascontiguousarray(labels, np.uint8).tobytes())
    pal = voc_palette() if palette is None else full_palette(palette)
    img.putpalette(pal.reshape(-1).tolist())
    return atomic_write(path, lambda f: img.save(f, format="PNG"))


def load_label_png(path: str | os.PathLike) -> np.ndarray:
    """Read a label PNG (palette 'P' or greyscale 'L': the pixel values are the labels). Returns (H, W) uint8."""
    img = open_image(path, "label")
    if img.mode not in ("P", "L"):
        raise InputError(f"{path}: label image must be palette (P) or greyscale (L) mode, got {img.mode}")
    return np.array(img, dtype=np.uint8)


def colorize(labels: np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    """labels: (H, W) int -> (H, W, 3) uint8 colours."""
    pal = voc_palette() if palette is None else full_palette(palette)
    return pal[np.asarray(labels, dtype=np.int64).clip(0, 255)]


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray | None = None, alpha: float = 0.5) -> np.ndarray:
    """Blend label colours over an image. image: (H, W, 3) uint8; labels: (H, W). Returns (H, W, 3) uint8."""
    if image.shape[:2] != labels.shape:
        raise InputError(f"overlay: image is {image.shape[:2]} but labels are {labels.shape}")
    mixed = (1 - alpha) * image.astype(np.float32) + alpha * colorize(labels, palette).astype(np.float32)
    return mixed.round().clip(0, 255).astype(np.uint8)
