"""Reading RGB images from disk the way a viewer shows them, with errors that name the file.

EXIF orientation (phone photos) is applied. High bit depths are scaled, not clipped: 16-bit greyscale
(Pillow modes I;16*, or I with values up to 65535) keeps its top 8 bits; palette, grey, CMYK and
alpha images become RGB (alpha dropped). Floating-point (F) and 32-bit integer images with values
beyond 16 bits are refused with a message.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from deeplab.errors import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm"})  # lower case
MAX_PIXELS = 30_000 * 30_000  # decompression-bomb guard: refuse larger images (Pillow warns above ~89 MP)


def open_image(path: str | os.PathLike, what: str = "image") -> Image.Image:
    """Open and fully decode an image file; missing/corrupt file -> InputError naming it (as ``what``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file not found: {path}")
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise InputError(f"{path}: {img.width}x{img.height} pixels is larger than this reader accepts")
            img.load()
            return img
    except InputError:
        raise
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError... on bad files
        raise InputError(f"{path}: cannot read {what} ({e})") from e


def to_rgb(img: Image.Image, name: str = "image") -> np.ndarray:
    """A decoded Pillow image as (H, W, 3) uint8 RGB, EXIF orientation applied, high bit depths scaled."""
    with contextlib.suppress(Exception):  # a malformed EXIF block: keep the stored orientation
        img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        grey = np.asarray(img).astype(np.int64)
        if grey.size and (grey.min() < 0 or grey.max() > 65535):
            raise InputError(f"{name}: {img.mode} image with values outside 0-65535; convert it to 8-bit RGB first")
        grey8 = (grey >> 8).astype(np.uint8) if img.mode != "I" or grey.max(initial=0) > 255 else grey.astype(np.uint8)
        return np.repeat(grey8[..., None], 3, axis=2)
    if img.mode == "F":
        raise InputError(f"{name}: floating-point image (mode F); convert it to 8-bit RGB first")
    return np.array(img.convert("RGB"), dtype=np.uint8)


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file (JPEG, PNG, ...) as (H, W, 3) uint8 RGB, as a viewer shows it. Missing/corrupt
    file -> InputError naming it."""
    return to_rgb(open_image(path), str(path))
