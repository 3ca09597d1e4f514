"""Coarse label masks for CRF refinement: label PNGs and colour annotations -> label indices.

A mask is either a label image (greyscale 'L', or palette 'P' with the VOC palette: pixel values are
labels, like VOC SegmentationClass) or a colour annotation (RGB, or 'P' with any other palette: each
distinct colour is a label, black = unknown, like the classic dense-CRF demo's anno*.png).
Labels are renumbered 0..K-1 (``classes`` maps back), unknown pixels -1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from deeplab.data.images import open_image
from deeplab.errors import InputError


@dataclass(frozen=True)
class Annotation:
    """index: (H, W) int64 in [0, K) or -1 (unknown); classes: (K,) label values (label images) or
    (K, 3) uint8 colours (colour annotations); palette: (K, 3) uint8 colour of each index for output."""

    index: np.ndarray
    classes: np.ndarray
    palette: np.ndarray
    is_colour: bool


def annotation_from_labels(labels: np.ndarray, unknown: int | None = 255, num_labels: int | None = None) -> Annotation:
    """Label image (H, W) ints. unknown: value meaning "no label" (None: none). num_labels: use the
    labels 0..num_labels-1 (the values must lie below it); default: the values present."""
    from deeplab.data.palette import voc_palette

    labels = np.asarray(labels).astype(np.int64)
    known = np.ones(labels.shape, bool) if unknown is None else labels != unknown
    if num_labels is not None:
        bad = known & ((labels < 0) | (labels >= num_labels))
        if bad.any():
            raise InputError(
                f"label values {np.unique(labels[bad])[:5].tolist()} are not below "
                f"num_labels={num_labels} (and not the unknown value {unknown})"
            )
        classes = np.arange(num_labels)
    else:
        classes = np.unique(labels[known])
    if len(classes) < 2:
        raise InputError(
            f"the mask needs at least 2 labels to refine, found {classes.tolist()} (unknown value: {unknown})"
        )
    index = np.full(labels.shape, -1, np.int64)
    index[known] = np.searchsorted(classes, labels[known])
    return Annotation(index, classes, voc_palette()[classes.clip(0, 255)], False)


def annotation_from_colours(rgb: np.ndarray) -> Annotation:
    """Colour annotation (H, W, 3) uint8: each distinct non-black colour a label, black unknown."""
    flat = rgb.reshape(-1, 3).astype(np.int64)
    code = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    known = code != 0
    codes, inverse = np.unique(code[known], return_inverse=True)
    if len(codes) < 2:
        raise InputError(f"the colour annotation needs at least 2 non-black colours, found {len(codes)}")
    if len(codes) > 255:
        raise InputError(
            f"the colour annotation has {len(codes)} colours; at most 255 labels are supported "
            f"(is it a photo rather than an annotation?)"
        )
    index = np.full(code.shape, -1, np.int64)
    index[known] = inverse
    colours = np.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], 1).astype(np.uint8)
    return Annotation(index.reshape(rgb.shape[:2]), colours, colours, True)


def _has_voc_palette(img: Image.Image, values: np.ndarray) -> bool:
    """True if the palette colours of the used ``values`` are the VOC colours (values are labels)."""
    from deeplab.data.palette import voc_palette

    raw = img.getpalette()
    if raw is None:
        return True
    pal = np.array(raw + [0] * (768 - len(raw)), np.uint8).reshape(-1, 3)
    return bool(np.array_equal(pal[values], voc_palette()[values]))


def read_annotation(path: str | os.PathLike, unknown: int | None = 255, num_labels: int | None = None) -> Annotation:
    """Read a label PNG (L, or P with the VOC palette: values are labels) or a colour annotation
    (RGB / RGBA, or P with another palette: colours are labels, black unknown)."""
    path = Path(path)
    img = open_image(path, "label")
    values = np.array(img) if img.mode in ("P", "L", "I", "I;16") else None
    try:
        if values is None or (img.mode == "P" and not _has_voc_palette(img, np.unique(values))):
            return annotation_from_colours(np.array(img.convert("RGB")))
        return annotation_from_labels(values, unknown, num_labels)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None
