"""CRF parameter search as in the paper: w2 = 3 and sigma_gamma = 3 fixed; coarse-to-fine grid over
w1 (bi_w), sigma_alpha (bi_xy_std) and sigma_beta (bi_rgb_std), scored by mIoU on a held-out subset.

The network runs once per image; its probabilities are cached on disk as float16 and every CRF setting is
then scored from the cache, in parallel over images (one task = one image x all settings of a stage).
sigma_alpha grids are given at PASCAL VOC scale (~500x375) and multiplied by ``spatial_scale`` =
sqrt(median image area / (500 * 375)) so that they mean the same on other image sizes (CamVid 480x360: 0.96).
"""

from __future__ import annotations

import contextlib
import itertools
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from deeplab.engine.evaluate import default_crf_fn, worker_pool
from deeplab.errors import InputError
from deeplab.metrics import confusion_matrix, scores

SEARCHED = ("bi_w", "bi_xy_std", "bi_rgb_std")
FIXED = {"pos_w": 3.0, "pos_xy_std": 3.0}
COARSE_GRID = {"bi_w": [3, 4, 5, 6], "bi_xy_std": [40, 60, 80, 100, 120], "bi_rgb_std": [3, 4, 5, 6]}
VOC_AREA = 500 * 375


def select_subset(n_total: int, n: int, seed: int) -> list[int]:
    """``n`` distinct indices of ``range(n_total)`` drawn with ``seed``, sorted (all of them if n >= n_total)."""
    if n < 1:
        raise InputError(f"--images must be >= 1, got {n}")
    if n >= n_total:
        return list(range(n_total))
    return sorted(np.random.default_rng(seed).choice(n_total, size=n, replace=False).tolist())


def check_grid(grid: dict) -> dict:
    """Validate a {param: [values]} grid over SEARCHED; returns it with float values, sorted."""
    unknown = set(grid) - set(SEARCHED)
    if unknown or set(grid) != set(SEARCHED):
        raise InputError(f"CRF grid must give lists for exactly {', '.join(SEARCHED)}; got {sorted(grid)}")
    out = {}
    for k in SEARCHED:
        vals = grid[k]
        if not isinstance(vals, (list, tuple)) or not vals or not all(isinstance(v, (int, float)) and v > 0 for v in vals):
            raise InputError(f"CRF grid {k}: expected a non-empty list of positive numbers, got {vals!r}")
        out[k] = sorted({float(v) for v in vals})
    return out


def refine_grid(grid: dict, best: dict) -> dict:
    """The finer stage: for each parameter, best and best +- half the coarse step around it."""
    fine = {}
    for k in SEARCHED:
        vals = grid[k]
        step = float(min(np.diff(vals))) / 2 if len(vals) > 1 else vals[0] / 4
        fine[k] = sorted({round(float(v), 6) for v in (best[k] - step, best[k], best[k] + step) if v > 0})
    return fine


def spatial_scale(sizes: list[tuple[int, int]]) -> float:
    """sqrt(median area / VOC area) of (H, W) image sizes."""
    return float(np.sqrt(np.median([h * w for h, w in sizes]) / VOC_AREA))


def cache_probabilities(dataset, indices: list[int], probs_fn: Callable, cache_dir: Path,
                        progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Forward each selected image once; store image, label and probs (float16) as cache_dir/NNNNN.npz."""
    paths = []
    for k, i in enumerate(indices):
        image, gt = dataset.sample(i)
        probs = np.asarray(probs_fn(image), dtype=np.float16)
        path = Path(cache_dir) / f"{k:05d}.npz"
        np.savez(path, image=image, gt=gt, probs=probs)
        paths.append(path)
        if progress is not None:
            progress(k + 1, len(indices))
    return paths


def score_settings(path: Path, settings: list, num_classes: int, crf_fn: Callable) -> np.ndarray:
    """One cached image under every CRF setting. Returns (S, C, C) int64 confusions, one per setting."""
    with np.load(path) as z:
        image, gt, probs = z["image"], z["gt"], z["probs"].astype(np.float32)
    probs /= probs.sum(0, keepdims=True)  # undo float16 rounding of the sum
    return np.stack([confusion_matrix(np.asarray(crf_fn(image, probs, p)).argmax(0), gt, num_classes)
                     for p in settings])


def _score_settings_star(args: tuple) -> np.ndarray:
    return score_settings(*args)


def score_grid(paths: list[Path], settings: list, num_classes: int, crf_fn: Callable, pool=None,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Summed (S, C, C) confusions of every setting over the cached images (in ``pool`` if given)."""
    total = np.zeros((len(settings), num_classes, num_classes), np.int64)
    tasks = [(p, settings, num_classes, crf_fn) for p in paths]
    results = pool.imap(_score_settings_star, tasks) if pool is not None else map(_score_settings_star, tasks)
    for done, conf in enumerate(results, 1):
        total += conf
        if progress is not None:
            progress(done, len(tasks))
    return total


def _cache_summary(paths: list[Path], num_classes: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The DCNN's (C, C) confusion (argmax of the cached probs) and the (H, W) sizes of the cached images."""
    total = np.zeros((num_classes, num_classes), np.int64)
    sizes = []
    for path in paths:
        with np.load(path) as z:
            total += confusion_matrix(z["probs"].argmax(0), z["gt"], num_classes)
            sizes.append(z["gt"].shape)
    return total, sizes


def crf_search(dataset, probs_fn: Callable, *, images: int = 100, seed: int = 0, grid: dict | None = None,
               refine: bool = True, scale_spatial: bool = True, iterations: int | None = None,
               workers: int = 2, crf_fn: Callable | None = None, cache_dir: str | Path | None = None,
               progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Search CRF parameters on a seeded subset of ``dataset``; returns the log (all trials, best, baseline).

    grid: {bi_w, bi_xy_std, bi_rgb_std: [values]} at VOC scale (default COARSE_GRID). refine: add the finer
    stage around the coarse best. iterations: mean-field iterations (default: CRFParams' default, 10).
    progress(stage, done, total) reports the forward pass ("forward") and each stage.
    """
    from deeplab.crf import CRFParams

    if crf_fn is None:
        crf_fn = default_crf_fn()
    coarse = check_grid(grid or COARSE_GRID)
    indices = select_subset(len(dataset), images, seed)
    names = getattr(dataset, "names", [str(i) for i in range(len(dataset))])
    num_classes = len(dataset.classes)
    base = {**CRFParams().to_dict(), **FIXED}
    if iterations is not None:
        base["iterations"] = int(iterations)
    tried: dict[tuple, dict] = {}

    def report(stage):
        return (lambda d, n: progress(stage, d, n)) if progress is not None else None

    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp, \
            (worker_pool(workers) if workers > 0 else contextlib.nullcontext()) as pool:
        paths = cache_probabilities(dataset, indices, probs_fn, Path(tmp), report("forward"))
        dcnn_conf, sizes = _cache_summary(paths, num_classes)
        scale = spatial_scale(sizes) if scale_spatial else 1.0
        baseline = scores(dcnn_conf)

        def run_stage(stage: str, g: dict) -> None:
            keys = [k for k in itertools.product(*(g[s] for s in SEARCHED)) if k not in tried]
            if not keys:
                return
            settings = [CRFParams.from_dict({**base, "bi_w": float(w), "bi_xy_std": round(float(a * scale), 3),
                                           "bi_rgb_std": float(b)})
                        for w, a, b in keys]
            confs = score_grid(paths, settings, num_classes, crf_fn, pool, report(stage))
            for key, p, conf in zip(keys, settings, confs):
                s = scores(conf)
                tried[key] = {"stage": stage, "params": p.to_dict(), "grid_point": dict(zip(SEARCHED, key)),
                              "miou": s["miou"], "pixel_acc": s["pixel_acc"], "mean_acc": s["mean_acc"]}

        def best_key() -> tuple:  # highest mIoU; ties -> first tried (deterministic)
            return max(tried, key=lambda k: tried[k]["miou"])

        run_stage("coarse", coarse)
        if refine:
            run_stage("fine", refine_grid(coarse, dict(zip(SEARCHED, best_key()))))
    best = tried[best_key()]
    return {
        "images": [names[i] for i in indices], "seed": seed, "spatial_scale": scale,
        "fixed": {k: base[k] for k in (*FIXED, "iterations")}, "coarse_grid": coarse,
        "dcnn": {"miou": baseline["miou"], "pixel_acc": baseline["pixel_acc"], "mean_acc": baseline["mean_acc"]},
        "best": best["params"], "best_miou": best["miou"], "best_pixel_acc": best["pixel_acc"],
        "trials": list(tried.values()),
    }


def write_crf_to_checkpoint(checkpoint: str | Path, params: dict, search_log: dict | None = None) -> Path:
    """Store ``params`` as the checkpoint's CRF config (load_model -> save_model, atomic replace)."""
    from deeplab.models import load_model, save_model

    loaded = load_model(checkpoint)
    extra = dict(loaded.meta.get("extra") or {})
    if search_log is not None:
        extra["crf_search"] = {k: search_log[k] for k in ("best_miou", "dcnn", "seed", "spatial_scale")} | {
            "n_images": len(search_log["images"])}
    return save_model(checkpoint, loaded.model, classes=loaded.classes, palette=loaded.palette,
                      preprocess=loaded.preprocess, crf=params, extra=extra)
