"""CRF parameter search that a user can trust: baselines, grid-edge extension, and a noise-aware choice.

As in the paper, w2 (pos_w) and sigma_gamma (pos_xy_std) stay fixed (3 and 3, or the model's current values)
and w1 (bi_w), sigma_alpha (bi_xy_std) and sigma_beta (bi_rgb_std) are searched on held-out images, coarse
to fine. Around that:
- **Baselines.** The DeepLab-LargeFOV defaults and the model's current parameters are always scored on the
  same images; a new setting is chosen only if it beats both by more than the noise (below).
- **Grid edges.** When the best setting lies on the edge of the grid in some parameter, the grid is extended
  one step outwards there (up to ``max_extend`` times) and the log says so.
- **Noise.** Every setting keeps one confusion matrix per image. A paired bootstrap over the images (the same
  resampled images for both settings) gives the spread of the mIoU difference between the best setting and
  each baseline; the best replaces the baseline only if the lower end of the 95% interval is above 0.
  The log reports the gap between the top settings against that spread.
Grids are given in pixels and colour levels as they are used: nothing is rescaled by the image size.

The network runs once per image; its probabilities are cached on disk as float16 and every CRF setting is
scored from the cache, in parallel over images (one task = one image x all settings of a stage).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from deeplab.engine.evaluate import default_crf_fn, worker_pool
from deeplab.errors import InputError
from deeplab.metrics import confusion_matrix, scores

SEARCHED = ("bi_w", "bi_xy_std", "bi_rgb_std")
FIXED = ("pos_w", "pos_xy_std")
GRIDS = {
    # A small grid around the DeepLab-LargeFOV defaults (4, 121, 5): 36 settings, then refined.
    "default": {"bi_w": [3, 4, 5], "bi_xy_std": [30, 60, 90, 121], "bi_rgb_std": [3, 5, 7]},
    # The paper's protocol (Sec. 4): w1 in [5, 10], sigma_alpha in [50:10:100], sigma_beta in [3:10]
    # (288 settings on 100 val images), then refined around the best.
    "paper": {
        "bi_w": [5, 6, 7, 8, 9, 10],
        "bi_xy_std": [50, 60, 70, 80, 90, 100],
        "bi_rgb_std": [3, 4, 5, 6, 7, 8, 9, 10],
    },
}
BOOTSTRAP = 1000


def select_subset(n_total: int, n: int, seed: int) -> list[int]:
    """``n`` distinct indices of ``range(n_total)`` drawn with ``seed``, sorted (all of them if n >= n_total)."""
    if n < 1:
        raise InputError(f"--images must be >= 1, got {n}")
    if n >= n_total:
        return list(range(n_total))
    return sorted(np.random.default_rng(seed).choice(n_total, size=n, replace=False).tolist())


def check_grid(grid: dict) -> dict:
    """Validate a {param: [values]} grid over SEARCHED; returns it with float values, sorted."""
    if set(grid) != set(SEARCHED):
        raise InputError(f"CRF grid must give lists for exactly {', '.join(SEARCHED)}; got {sorted(grid)}")
    out = {}
    for k in SEARCHED:
        vals = grid[k]
        if (
            not isinstance(vals, (list, tuple))
            or not vals
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in vals)
        ):
            raise InputError(f"CRF grid {k}: expected a non-empty list of positive numbers, got {vals!r}")
        out[k] = sorted({float(v) for v in vals})
    return out


def step_of(values: list[float], value: float) -> float:
    """Grid spacing next to ``value`` (a quarter of the value on one-point axes)."""
    return float(min(np.diff(values))) if len(values) > 1 else value / 4


def refine_grid(grid: dict, best: dict) -> dict:
    """The finer stage: for each parameter, best and best +- half the coarse step around it."""
    fine = {}
    for k in SEARCHED:
        half = step_of(grid[k], best[k]) / 2
        fine[k] = sorted({round(float(v), 6) for v in (best[k] - half, best[k], best[k] + half) if v > 0})
    return fine


def extend_grid(grid: dict, best: dict) -> dict | None:
    """The grid grown by one step beyond every edge the best setting lies on (None if it lies on none).
    Axes with one value are fixed by choice and never grown; a lower edge is extended only while it stays
    positive."""
    grown, moved = {k: list(v) for k, v in grid.items()}, False
    for k in SEARCHED:
        vals, step = grid[k], step_of(grid[k], best[k])
        if len(vals) < 2:
            continue
        if best[k] == vals[-1]:
            grown[k].append(round(vals[-1] + step, 6))
            moved = True
        if best[k] == vals[0] and vals[0] - step > 0:
            grown[k].insert(0, round(vals[0] - step, 6))
            moved = True
    return grown if moved else None


def _save_cache(f, *, image: np.ndarray, gt: np.ndarray, probs: np.ndarray) -> None:
    np.savez(f, image=image, gt=gt, probs=probs)


def cache_probabilities(
    dataset, indices: list[int], probs_fn: Callable, cache_dir: Path, progress: Callable[[int], None] | None = None
) -> list[Path]:
    """Forward each selected image once; store image, label and probs (float16) as cache_dir/NNNNN.npz."""
    from deeplab.io import atomic_write

    paths = []
    for k, i in enumerate(indices):
        image, gt = dataset.sample(i)
        probs = np.asarray(probs_fn(image), dtype=np.float16)
        path = Path(cache_dir) / f"{k:05d}.npz"
        atomic_write(path, functools.partial(_save_cache, image=image, gt=gt, probs=probs))
        paths.append(path)
        if progress is not None:
            progress(1)
    return paths


def score_settings(path: Path, settings: list, num_classes: int, crf_fn: Callable) -> np.ndarray:
    """One cached image under every CRF setting. Returns (S, C, C) int64 confusions, one per setting."""
    with np.load(path) as z:
        image, gt, probs = z["image"], z["gt"], z["probs"].astype(np.float32)
    probs /= probs.sum(0, keepdims=True)  # undo float16 rounding of the sum
    return np.stack(
        [confusion_matrix(np.asarray(crf_fn(image, probs, p)).argmax(0), gt, num_classes) for p in settings]
    )


def _score_settings_star(args: tuple) -> np.ndarray:
    return score_settings(*args)


def score_grid(
    paths: list[Path],
    settings: list,
    num_classes: int,
    crf_fn: Callable,
    pool=None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Per-image confusions (I, S, C, C) of every setting over the cached images (in ``pool`` if given).
    progress(k) is told of k more CRF runs as each image finishes."""
    tasks = [(p, settings, num_classes, crf_fn) for p in paths]
    results = pool.imap(_score_settings_star, tasks) if pool is not None else map(_score_settings_star, tasks)
    out = []
    for conf in results:
        out.append(conf)
        if progress is not None:
            progress(len(settings))
    return np.stack(out)


def miou(conf: np.ndarray) -> float:
    """Mean IoU of a summed (C, C) confusion (classes absent from both prediction and truth skipped)."""
    return float(scores(conf)["miou"])


def bootstrap_gain(per_image: np.ndarray, a: int, b: int, draws: int = BOOTSTRAP, seed: int = 0) -> dict:
    """Paired bootstrap over images of mIoU(a) - mIoU(b). per_image: (I, S, C, C). Returns the observed
    difference, its standard error and the 95% interval."""
    rng = np.random.default_rng(seed)
    n = per_image.shape[0]
    observed = miou(per_image[:, a].sum(0)) - miou(per_image[:, b].sum(0))
    diffs = np.empty(draws)
    for t in range(draws):
        idx = rng.integers(0, n, n)
        diffs[t] = miou(per_image[idx, a].sum(0)) - miou(per_image[idx, b].sum(0))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"diff": observed, "se": float(diffs.std(ddof=1)) if draws > 1 else 0.0, "ci95": [float(lo), float(hi)]}


def crf_search(
    dataset,
    probs_fn: Callable,
    *,
    images: int = 100,
    seed: int = 0,
    grid: dict | str = "default",
    refine: bool = True,
    max_extend: int = 3,
    iterations: int | None = None,
    current: dict | None = None,
    workers: int = 2,
    crf_fn: Callable | None = None,
    cache_dir: str | Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Search CRF parameters on a seeded subset of ``dataset``; returns the log (baselines, all trials, the
    decision and why).

    grid: a GRIDS name or {bi_w, bi_xy_std, bi_rgb_std: [values]}. refine: add the finer stage around the
    coarse best. max_extend: grid-edge extensions allowed. iterations: mean-field iterations (default: the
    current parameters', else 10). current: the model's stored CRF parameters (a baseline; its pos_w /
    pos_xy_std stay fixed). progress(stage, done, total) counts CRF runs (forward passes for "forward").
    """
    from deeplab.crf import CRFParams

    if crf_fn is None:
        crf_fn = default_crf_fn()
    if isinstance(grid, str):
        if grid not in GRIDS:
            raise InputError(f"--grid {grid!r}: choose {', '.join(GRIDS)} or give a JSON object")
        grid = GRIDS[grid]
    coarse = check_grid(grid)
    defaults = CRFParams().to_dict()
    current_params = CRFParams.from_dict(current).to_dict() if current else None
    base = dict(current_params or defaults)
    if iterations is not None:
        base["iterations"] = int(iterations)
    baselines = {"defaults": {**defaults, "iterations": base["iterations"]}}
    if current_params is not None and current_params != baselines["defaults"]:
        baselines["current"] = {**current_params, "iterations": base["iterations"]}
    indices = select_subset(len(dataset), images, seed)
    names = getattr(dataset, "names", [str(i) for i in range(len(dataset))])
    num_classes = len(dataset.classes)
    settings: list[dict] = []  # every scored parameter dict, in order
    stages: list[str] = []
    confs: list[np.ndarray] = []  # per stage: (I, S_stage, C, C)

    def counter(stage: str, total: int):
        done = [0]

        def tick(k: int) -> None:
            done[0] += k
            if progress is not None:
                progress(stage, done[0], total)

        return tick

    def run_stage(stage: str, params: list[dict]) -> None:
        new = [p for p in params if p not in settings]
        if not new:
            return
        objs = [CRFParams.from_dict(p) for p in new]
        confs.append(score_grid(paths, objs, num_classes, crf_fn, pool, counter(stage, len(new) * len(paths))))
        settings.extend(new)
        stages.extend([stage] * len(new))

    def grid_params(g: dict) -> list[dict]:
        return [
            {**base, "bi_w": w, "bi_xy_std": a, "bi_rgb_std": b}
            for w, a, b in itertools.product(*(g[k] for k in SEARCHED))
        ]

    def per_image() -> np.ndarray:
        return np.concatenate(confs, axis=1)

    def best_index() -> int:  # highest mIoU of all settings; ties -> the first scored (baselines first)
        totals = per_image().sum(0)
        return max(range(len(settings)), key=lambda i: (miou(totals[i]), -i))

    extensions: list[dict] = []
    with (
        tempfile.TemporaryDirectory(dir=cache_dir) as tmp,
        worker_pool(workers) if workers > 0 else contextlib.nullcontext() as pool,
    ):
        paths = cache_probabilities(dataset, indices, probs_fn, Path(tmp), counter("forward", len(indices)))
        run_stage("baseline", list(baselines.values()))
        current_grid = coarse
        run_stage("coarse", grid_params(current_grid))
        for _ in range(max_extend):
            best = {k: settings[best_index()][k] for k in SEARCHED}
            grown = extend_grid(current_grid, best)
            if grown is None:
                break
            extensions.append({"at": best, "grid": grown})
            current_grid = grown
            run_stage("extend", grid_params(grown))
        if refine:
            best = {k: settings[best_index()][k] for k in SEARCHED}
            run_stage("fine", grid_params(refine_grid(current_grid, best)))
        dcnn_conf = np.zeros((num_classes, num_classes), np.int64)
        for path in paths:
            with np.load(path) as z:
                dcnn_conf += confusion_matrix(z["probs"].argmax(0), z["gt"], num_classes)

    pim = per_image()
    totals = pim.sum(0)
    trials = []
    for i, (p, stage) in enumerate(zip(settings, stages, strict=True)):
        s = scores(totals[i])
        trials.append(
            {
                "stage": stage,
                "params": p,
                "miou": float(s["miou"]),
                "pixel_acc": float(s["pixel_acc"]),
                "mean_acc": float(s["mean_acc"]),
            }
        )
    best_i = best_index()
    final = {k: settings[best_i][k] for k in SEARCHED}
    on_edge = any(len(v) > 1 and final[k] in (v[0], v[-1]) for k, v in current_grid.items())
    base_idx = {name: settings.index(p) for name, p in baselines.items()}
    keep_name = "current" if "current" in base_idx else "defaults"
    strongest = max(base_idx, key=lambda n: (miou(totals[base_idx[n]]), n == keep_name))
    gains = {name: bootstrap_gain(pim, best_i, i, seed=seed) for name, i in base_idx.items()}
    ranked = sorted(range(len(settings)), key=lambda i: -miou(totals[i]))
    runner_up = next(i for i in ranked if i != best_i)
    top_gap = bootstrap_gain(pim, best_i, runner_up, seed=seed)
    significant = all(g["ci95"][0] > 0 for g in gains.values())
    if significant:
        chosen, reason = (
            settings[best_i],
            (
                f"beats every baseline beyond the noise (gain over {strongest}: "
                f"{100 * gains[strongest]['diff']:+.2f} mIoU, 95% interval "
                f"[{100 * gains[strongest]['ci95'][0]:+.2f}, "
                f"{100 * gains[strongest]['ci95'][1]:+.2f}])"
            ),
        )
    else:
        chosen = settings[base_idx[strongest]]
        reason = (
            f"the best grid setting's gain over the {strongest} parameters "
            f"({100 * gains[strongest]['diff']:+.2f} mIoU) is within the image-to-image noise (95% interval "
            f"[{100 * gains[strongest]['ci95'][0]:+.2f}, {100 * gains[strongest]['ci95'][1]:+.2f}]): "
            f"keeping the {strongest} parameters"
        )
    dcnn = scores(dcnn_conf)
    return {
        "images": [names[i] for i in indices],
        "seed": seed,
        "fixed": {k: base[k] for k in (*FIXED, "iterations")},
        "coarse_grid": coarse,
        "final_grid": current_grid,
        "extensions": extensions,
        "best_on_grid_edge": on_edge,
        "dcnn": {
            "miou": float(dcnn["miou"]),
            "pixel_acc": float(dcnn["pixel_acc"]),
            "mean_acc": float(dcnn["mean_acc"]),
        },
        "baselines": {n: trials[i] for n, i in base_idx.items()},
        "best": settings[best_i],
        "best_miou": trials[best_i]["miou"],
        "gain_over_baselines": gains,
        "top_two_gap": {**top_gap, "runner_up": settings[runner_up]},
        "chosen": chosen,
        "chosen_miou": trials[settings.index(chosen)]["miou"],
        "changed": significant,
        "reason": reason,
        "trials": trials,
    }


def write_crf_to_checkpoint(
    checkpoint: str | Path, params: dict, search_log: dict | None = None, out: str | Path | None = None
) -> Path:
    """Store ``params`` as a model file's CRF config (load_model -> save_model, atomic), in place or into
    ``out``. The model shipped inside the package is read-only (InputError): write a copy with ``out``."""
    from deeplab.models import load_model, save_model
    from deeplab.weights import is_shipped_model

    target = Path(out) if out is not None else Path(checkpoint)
    if is_shipped_model(target):
        raise InputError(
            f"{target} is the model shipped inside the package and is read-only; write a copy with --write-to COPY.pt"
        )
    loaded = load_model(checkpoint)
    extra = dict(loaded.meta.get("extra") or {})
    if search_log is not None:
        extra["crf_search"] = {k: search_log[k] for k in ("chosen_miou", "best_miou", "dcnn", "seed", "reason")} | {
            "n_images": len(search_log["images"])
        }
    return save_model(
        target,
        loaded.model,
        classes=loaded.classes,
        palette=loaded.palette,
        preprocess=loaded.preprocess,
        crf=params,
        extra=extra,
    )
