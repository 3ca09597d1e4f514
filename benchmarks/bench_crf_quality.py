"""Dense CRF quality: does the CRF improve a DCNN-like coarse score map? Prints markdown tables.

    python benchmarks/bench_crf_quality.py [--data ../shared/data] [--masks 300] [--seed 0] [--workers 2]

Coarse scores (deeplab.crf.synthetic.coarse_probs): ground-truth class fractions on the stride-8 grid,
blurred, x10 logits, spatially correlated per-class logit noise, bilinear x8 upsampling, softmax.
Primary: the real photos of voc_mini (13 images). Secondary: the official VOC 2012 val masks (1,449; a
seeded subset of --masks) with SYNTHETIC images rendered from each mask (per-class colour + texture
noise + blur), since the real photos are not available. DeepLab-LargeFOV CRF parameters throughout.
Scores: mIoU and pixel accuracy over all pixels, and pixel accuracy inside the 5-px trimap band around
object boundaries (deeplab.metrics.trimap_band; VOC's void band excluded from scoring).
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
NUM_CLASSES = 21


def score_pair(img: np.ndarray, gt: np.ndarray, seed: int, band_width: int) -> dict:
    """Confusion matrices before/after the CRF, over all pixels and inside the trimap band."""
    from deeplab.crf import dense_crf
    from deeplab.crf.synthetic import coarse_probs
    from deeplab.metrics import confusion_matrix, trimap_band

    probs = coarse_probs(gt, NUM_CLASSES, seed=seed)
    refined = dense_crf(img, probs, threads=1)
    band = trimap_band(gt, band_width)
    out = {}
    for name, pred in (("before", probs.argmax(0)), ("after", refined.argmax(0))):
        out[name] = confusion_matrix(pred, gt, NUM_CLASSES)
        out["band_" + name] = confusion_matrix(pred, gt, NUM_CLASSES, mask=band)
    return out


def real_job(args) -> dict:
    data, name, seed, band = args
    root = data / "voc_mini/VOC2012"
    img = np.array(Image.open(root / "JPEGImages" / f"{name}.jpg").convert("RGB"))
    gt = np.array(Image.open(root / "SegmentationClass" / f"{name}.png"))
    return score_pair(img, gt, seed, band)


def synthetic_job(args) -> dict:
    from deeplab.crf.synthetic import render_image

    path, seed, band = args
    gt = np.array(Image.open(path))
    return score_pair(render_image(gt, seed=seed), gt, seed, band)


def table(title: str, results: list[dict]) -> list[str]:
    from deeplab.metrics import scores

    total = {k: sum(r[k] for r in results) for k in results[0]}
    s = {k: scores(v) for k, v in total.items()}
    rows = [title, "", "| | mIoU | pixel accuracy | accuracy in 5-px boundary band |", "|---|---|---|---|"]
    for name, label in (("before", "coarse scores (argmax)"), ("after", "+ dense CRF")):
        rows.append(
            f"| {label} | {100 * s[name]['miou']:.2f} | {100 * s[name]['pixel_acc']:.2f} | "
            f"{100 * s['band_' + name]['pixel_acc']:.2f} |"
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="shared data root")
    p.add_argument("--masks", type=int, default=300, help="VOC val masks for the synthetic-image run (0: skip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--band", type=int, default=5, help="trimap band width (px)")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    args = p.parse_args()
    root = args.data / "voc_mini/VOC2012/ImageSets/Segmentation"
    names = (root / "val.txt").read_text().split() + (root / "train.txt").read_text().split()
    masks = sorted((args.data / "voc2012-val-masks").glob("*.png"))
    rng = np.random.default_rng(args.seed)
    chosen = sorted(rng.choice(len(masks), size=min(args.masks, len(masks)), replace=False)) if args.masks else []
    with ProcessPoolExecutor(args.workers) as pool:
        real = list(pool.map(real_job, [(args.data, n, args.seed + i, args.band) for i, n in enumerate(names)]))
        synth = list(pool.map(synthetic_job, [(masks[i], args.seed + int(i), args.band) for i in chosen]))
    sections = [table(f"Real photos: the {len(names)} voc_mini images (primary)", real)]
    if synth:
        sections.append(
            table(
                f"SYNTHETIC images rendered from {len(synth)} of the {len(masks)} VOC 2012 val masks "
                f"(seed {args.seed}; secondary)",
                synth,
            )
        )
    print("\n\n".join("\n".join(rows) for rows in sections))


if __name__ == "__main__":
    main()
