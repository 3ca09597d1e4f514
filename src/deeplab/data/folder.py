"""A generic folder data set: images/, labels/ (label PNGs, same file stems) and a class list.

Layout under ``root``::

    classes.txt     one class per line, index = line number: "name" or "name R G B" (palette colour)
    images/         NAME.jpg / NAME.png ... RGB images
    labels/         NAME.png label maps (palette or greyscale; pixel value = class id, 255 = ignore)
    SPLIT.txt       optional list of NAMEs for split SPLIT; split "all" = every image with a label
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from deeplab.data.base import SegmentationDataset, read_id_list
from deeplab.data.images import IMAGE_SUFFIXES
from deeplab.data.palette import voc_palette
from deeplab.errors import InputError


def read_class_file(path: Path) -> tuple[list[str], np.ndarray]:
    """Parse a class list file. Returns (names, (K, 3) uint8 palette; VOC colours where none is given)."""
    if not path.is_file():
        raise InputError(f"class list file not found: {path}")
    names: list[str] = []
    colours: list[tuple[int, ...] | None] = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (1, 4):
            raise InputError(f"{path}:{n}: expected 'NAME' or 'NAME R G B', got {line!r}")
        names.append(fields[0])
        try:
            rgb: tuple[int, ...] = tuple(int(v) for v in fields[1:])
        except ValueError:
            raise InputError(f"{path}:{n}: colour must be three integers 0-255, got {line!r}") from None
        if any(not 0 <= v <= 255 for v in rgb):
            raise InputError(f"{path}:{n}: colour must be three integers 0-255, got {line!r}")
        colours.append(rgb or None)
    if not names:
        raise InputError(f"{path}: no classes listed")
    if len(names) > 255:
        raise InputError(f"{path}: at most 255 classes (255 is the ignore label), got {len(names)}")
    palette = voc_palette(len(names))
    for i, colour in enumerate(colours):
        if colour is not None:
            palette[i] = colour
    return names, palette


class FolderDataset(SegmentationDataset):
    """Images + label PNGs + a class list (see module docstring)."""

    boundary = "labels"

    def __init__(
        self,
        root: str | Path,
        split: str = "all",
        transform: Callable | None = None,
        classes_file: str | Path | None = None,
    ):
        self.root = Path(root)
        self.split = split
        self.classes, self.palette = read_class_file(Path(classes_file) if classes_file else self.root / "classes.txt")
        image_dir, label_dir = self.root / "images", self.root / "labels"
        for d in (image_dir, label_dir):
            if not d.is_dir():
                raise InputError(f"folder data set: directory not found: {d}")
        by_stem = {p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
        listing = self.root / f"{split}.txt"
        if listing.is_file():
            names = read_id_list(listing)
            missing = [n for n in names if n not in by_stem]
            if missing:
                raise InputError(f"{listing}: no image in {image_dir} for {missing[:3]}")
        elif split == "all":
            names = [n for n in by_stem if (label_dir / f"{n}.png").is_file()]
        else:
            raise InputError(f"folder data set: split list not found: {listing} (or use split 'all')")
        if not names:
            raise InputError(f"folder data set {self.root}: no image with a label PNG in {label_dir}")
        super().__init__(names, [by_stem[n] for n in names], [label_dir / f"{n}.png" for n in names], transform)
