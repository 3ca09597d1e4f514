"""Reading RGB images from disk with errors that name the file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from deeplab.errors import InputError


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file (JPEG, PNG, ...) as (H, W, 3) uint8 RGB. Missing/corrupt file -> InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"), dtype=np.uint8)
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... on corrupt files
        raise InputError(f"{path}: cannot read image ({e})") from e
