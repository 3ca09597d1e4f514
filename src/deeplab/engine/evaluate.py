"""Evaluate a segmentation model over a data set, with and without the dense CRF, in one pass.

The network runs in the main process (one forward per image); everything per-image after it -- the CRF on
the probabilities, argmax, confusion matrices, trimap bands -- runs in a pool of worker processes, with
at most a few images in flight. Confusion matrices are integer sums, so results do not depend on the
number of workers or on completion order.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing as mp
import signal
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from deeplab.engine.trimap import band_confusions, boundary_distance, trimap_scores
from deeplab.errors import InputError
from deeplab.metrics import confusion_matrix, scores

ProbsFn = Callable[[np.ndarray], np.ndarray]  # image (H, W, 3) uint8 -> probs (C, H, W) float32
CRFFn = Callable  # (image (H, W, 3) uint8, probs (L, H, W) float32, params) -> (L, H, W) float32


@dataclass
class EvalResult:
    """Summed statistics. conf*: (C, C) int64 (rows ground truth); bands*: (W, C, C) int64 for widths 1..W."""

    classes: list[str]
    n_images: int = 0
    conf: np.ndarray | None = None
    conf_crf: np.ndarray | None = None
    bands: np.ndarray | None = None
    bands_crf: np.ndarray | None = None
    crf_params: dict | None = None
    names: list[str] = field(default_factory=list)

    def add(self, stats: dict) -> None:
        for key in ("conf", "conf_crf", "bands", "bands_crf"):
            if stats.get(key) is not None:
                cur = getattr(self, key)
                setattr(self, key, stats[key].copy() if cur is None else cur + stats[key])
        self.n_images += 1

    def to_json(self) -> dict:
        """Plain-JSON summary: scores per method, per-class IoU/accuracy, trimap curves, confusion matrices."""
        out: dict = {"n_images": self.n_images, "classes": list(self.classes)}
        methods = [("dcnn", self.conf, self.bands), ("crf", self.conf_crf, self.bands_crf)]
        for name, conf, _ in methods:
            if conf is not None:
                out[name] = _scores_json(conf, self.classes)
        if self.crf_params is not None:
            out["crf_params"] = self.crf_params
        if self.bands is not None:
            out["trimap"] = {"widths": list(range(1, self.bands.shape[0] + 1))}
            for name, _, bands in methods:
                if bands is not None:
                    out["trimap"][name] = {k: [_num(v) for v in vs] for k, vs in trimap_scores(bands).items()}
        for name, conf, _ in methods:
            if conf is not None:
                out.setdefault("confusion", {})[name] = conf.tolist()
        return out


def _num(v: float) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def _scores_json(conf: np.ndarray, classes: list[str]) -> dict:
    s = scores(conf)
    return {
        "pixel_acc": _num(s["pixel_acc"]),
        "mean_acc": _num(s["mean_acc"]),
        "miou": _num(s["miou"]),
        "iou": {c: _num(v) for c, v in zip(classes, s["iou"], strict=True)},
        "acc": {c: _num(v) for c, v in zip(classes, s["acc"], strict=True)},
    }


def image_stats(
    image: np.ndarray,
    probs: np.ndarray,
    gt: np.ndarray,
    num_classes: int,
    boundary: str = "void",
    trimap_width: int = 0,
    crf_fn: CRFFn | None = None,
    crf_params=None,
) -> dict:
    """Per-image statistics: conf (C, C); bands (W, C, C) if trimap_width > 0; the same with suffix _crf
    when crf_fn is given (applied to ``probs``: (C, H, W) float)."""
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 3 or probs.shape[0] != num_classes or probs.shape[1:] != gt.shape:
        raise InputError(
            f"model output has shape {probs.shape}; expected ({num_classes}, {gt.shape[0]}, {gt.shape[1]})"
        )
    preds = {"": probs.argmax(0)}
    if crf_fn is not None:
        preds["_crf"] = np.asarray(crf_fn(image, probs, crf_params)).argmax(0)
    dist = boundary_distance(gt, boundary) if trimap_width > 0 else None
    out = {}
    for suffix, pred in preds.items():
        out["conf" + suffix] = confusion_matrix(pred, gt, num_classes)
        if dist is not None:
            out["bands" + suffix] = band_confusions(pred, gt, dist, num_classes, trimap_width)
    return out


def _image_stats_star(args: tuple) -> dict:
    return image_stats(*args)


def _ignore_sigint() -> None:
    """Pool worker start-up: Ctrl-C (SIGINT to the whole process group) is the main process's to handle; it
    terminates the pool. Workers print no KeyboardInterrupt tracebacks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator:
    """A process pool whose workers start from a fresh server process ("forkserver"): they inherit no torch or
    OpenMP thread state from this process (forking after a forward pass can deadlock numba's OpenMP layer).
    Closed and joined on exit (terminated on error or interruption)."""
    pool = mp.get_context("forkserver").Pool(workers, initializer=_ignore_sigint)
    try:
        yield pool
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def default_crf_fn() -> CRFFn:
    """deeplab.crf.dense_crf, single-threaded: no oversubscription inside a worker pool, and the same
    float rounding inline and in workers (the multi-threaded splat sums per-thread buffers), so the
    scores do not depend on ``workers``."""
    from deeplab.crf import dense_crf

    return functools.partial(dense_crf, threads=1)


def evaluate(
    dataset,
    probs_fn: ProbsFn,
    *,
    crf: bool = False,
    crf_params=None,
    crf_fn: CRFFn | None = None,
    trimap_width: int = 0,
    limit: int | None = None,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    shard: tuple[int, int] = (0, 1),
) -> EvalResult:
    """Score ``probs_fn`` over ``dataset`` (items: image (H, W, 3) uint8, label (H, W) uint8; 255 ignored).

    crf: also score the CRF-refined prediction (crf_fn defaults to deeplab.crf.dense_crf, crf_params to the
    CRF's defaults). trimap_width: W > 0 also accumulates band statistics for widths 1..W (paper: 40).
    limit: the first N images only. workers: processes for the per-image work (0 = inline).
    shard (rank, world): this process scores images rank, rank + world, ... (the sums of all shards' integer
    confusions equal one process's). progress(done, total) is called after each image.
    """
    if crf:
        if crf_fn is None:
            crf_fn = default_crf_fn()
        if crf_params is None:
            from deeplab.crf import CRFParams

            crf_params = CRFParams()
    else:
        crf_fn = crf_params = None
    if trimap_width < 0:
        raise InputError(f"trimap width must be >= 0, got {trimap_width}")
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    if n < 1:
        raise InputError(f"nothing to evaluate: the data set has {len(dataset)} images (limit {limit})")
    rank, world = shard
    mine = list(range(rank, n, world))
    classes = list(dataset.classes)
    result = EvalResult(classes, crf_params=crf_params.to_dict() if crf_params is not None else None)
    boundary = getattr(dataset, "boundary", "void")

    def tasks():
        for i in mine:
            image, gt = dataset.sample(i) if hasattr(dataset, "sample") else dataset[i]  # untransformed pair
            result.names.append(dataset.names[i] if hasattr(dataset, "names") else str(i))
            yield image, probs_fn(image), gt, len(classes), boundary, trimap_width, crf_fn, crf_params

    def collect(stats: dict) -> None:
        result.add(stats)
        if progress is not None:
            progress(result.n_images, len(mine))

    if workers <= 0:
        for t in tasks():
            collect(image_stats(*t))
        return result
    with worker_pool(workers) as pool:
        pending: deque = deque()
        for t in tasks():  # forward in this process while the pool works on earlier images
            pending.append(pool.apply_async(_image_stats_star, (t,)))
            while len(pending) > workers:
                collect(pending.popleft().get())
        while pending:
            collect(pending.popleft().get())
    return result


def format_table(summary: dict) -> str:
    """Per-class IoU table (%) of an EvalResult.to_json() summary, plus the overall scores."""
    methods = [m for m in ("dcnn", "crf") if m in summary]
    heads = {"dcnn": "DCNN", "crf": "DCNN+CRF"}
    width = max(12, *(len(c) for c in summary["classes"]))
    lines = [f"{'class':<{width}} " + " ".join(f"{heads[m]:>9}" for m in methods)]

    def pct(v):
        return f"{100 * v:9.2f}" if v is not None else f"{'-':>9}"

    for c in summary["classes"]:
        lines.append(f"{c:<{width}} " + " ".join(pct(summary[m]["iou"][c]) for m in methods))
    for key, name in (("miou", "mean IoU"), ("pixel_acc", "pixel acc"), ("mean_acc", "mean acc")):
        lines.append(f"{name:<{width}} " + " ".join(pct(summary[m][key]) for m in methods))
    return "\n".join(lines)


def model_probs_fn(model, preprocess=None, backend: str | None = None) -> ProbsFn:
    """probs_fn of a network: a LoadedModel, or an nn.Module with an optional Preprocess; backend as in
    deeplab.models.predict (default channels_last: deterministic, no set-up)."""
    from deeplab.models.predict import DEFAULT_BACKEND, predict

    if hasattr(model, "model") and hasattr(model, "preprocess"):  # LoadedModel
        model, preprocess = model.model, preprocess or model.preprocess
    return lambda image: predict(model, image, preprocess, backend=backend or DEFAULT_BACKEND)
