"""Rebuild the tiny real-data fixtures of the test suite from ../shared/data (run from the repository root).

    python tests/data/make_fixtures.py [--data ../shared/data]

camvid_tiny/: the CamVid SegNet layout (lists with absolute /SegNet/... paths, train/ trainannot/ ...) with the
first 4 train, 2 val and 2 test frames at quarter size (120x90; images bilinear, labels nearest).
voc_tiny/VOC2012/: the devkit layout with 3 val and 1 train image of voc_mini at 0.4x (labels nearest, palette
kept). voc_crops.npz: 60x80 crops (rows 90-150, columns 140-220) of the first 4 voc_mini val photos and their
ground truth, the inputs of the exact-reference CRF tests. CamVid frames are CC BY-NC 4.0
(src/deeplab/weights/LICENSE.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent


def shrink(src: Path, dst: Path, factor: float, label: bool) -> None:
    with Image.open(src) as im:
        size = (round(im.width * factor), round(im.height * factor))
        out = im.resize(size, Image.NEAREST if label else Image.BILINEAR)
        if label and im.mode == "P":
            out.putpalette(im.getpalette())
    dst.parent.mkdir(parents=True, exist_ok=True)
    out.save(dst, optimize=True, **({"quality": 90} if dst.suffix == ".jpg" else {}))


def camvid(data: Path, counts: dict[str, int], factor: float = 0.25) -> None:
    src, root = data / "camvid", HERE / "camvid_tiny"
    for split, n in counts.items():
        lines = [ln.split() for ln in (src / f"{split}.txt").read_text().splitlines() if ln.strip()][:n]
        for img, lab in lines:
            shrink(src / split / Path(img).name, root / split / Path(img).name, factor, False)
            shrink(src / f"{split}annot" / Path(lab).name, root / f"{split}annot" / Path(lab).name, factor, True)
        (root / f"{split}.txt").write_text("".join(f"{a} {b}\n" for a, b in lines))


def voc(data: Path, factor: float = 0.4) -> None:
    src, root = data / "voc_mini" / "VOC2012", HERE / "voc_tiny" / "VOC2012"
    for split, n in (("val", 3), ("train", 1)):
        ids = (src / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()[:n]
        for i in ids:
            shrink(src / "JPEGImages" / f"{i}.jpg", root / "JPEGImages" / f"{i}.jpg", factor, False)
            shrink(src / "SegmentationClass" / f"{i}.png", root / "SegmentationClass" / f"{i}.png", factor, True)
        lists = root / "ImageSets" / "Segmentation"
        lists.mkdir(parents=True, exist_ok=True)
        (lists / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        assert np.array(Image.open(root / "SegmentationClass" / f"{ids[0]}.png")).max() == 255  # void band kept


def voc_crops(data: Path, n: int = 4, box=(slice(90, 150), slice(140, 220))) -> None:
    src = data / "voc_mini" / "VOC2012"
    ids = (src / "ImageSets" / "Segmentation" / "val.txt").read_text().split()[:n]
    images = np.stack([np.array(Image.open(src / "JPEGImages" / f"{i}.jpg").convert("RGB"))[box] for i in ids])
    labels = np.stack([np.array(Image.open(src / "SegmentationClass" / f"{i}.png"))[box] for i in ids])
    np.savez_compressed(HERE / "voc_crops.npz", images=images, labels=labels, ids=np.array(ids))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=HERE.parents[2] / "shared" / "data")
    args = ap.parse_args()
    camvid(args.data, {"train": 4, "val": 2, "test": 2})
    voc(args.data)
    voc_crops(args.data)


if __name__ == "__main__":
    main()
