"""Reading RGB images from disk with errors that name the file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from deeplab.errors import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm"})  # lower case


def open_image(path: str | os.PathLike, what: str = "image") -> Image.Image:
    """Open and fully decode an image file; missing/corrupt file -> InputError naming it (as ``what``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            return img
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... on corrupt files
        raise InputError(f"{path}: cannot read {what} ({e})") from e


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file (JPEG, PNG, ...) as (H, W, 3) uint8 RGB. Missing/corrupt file -> InputError."""
    return np.array(open_image(path).convert("RGB"), dtype=np.uint8)
