"""The training loop: SGD on the stride-8 score map against ground truth subsampled by 8 (paper Sec. 4).

Output folder (``out``): config.yaml (the resolved config), checkpoint.pt (training state, atomic, every
train.checkpoint_every iterations, on SIGINT/SIGTERM and at the end), log.jsonl + curves.png (loss, lr,
val mIoU), model.pt (the final model, deeplab.models.save_model format) when the run completes.
Runs under torchrun with DistributedDataParallel; only rank 0 writes files.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from deeplab.data.base import IGNORE_INDEX
from deeplab.data.transforms import SeededDataset, TrainTransform, subsample_labels
from deeplab.engine import distributed as D
from deeplab.engine.config import Config, config_from_dict, dump_config
from deeplab.engine.optim import build_optimizer, lr_at, set_lr
from deeplab.engine.plots import append_log, plot_curves, read_log, truncate_log
from deeplab.engine.sampler import Position, ResumableSampler
from deeplab.engine.state import load_state, save_state
from deeplab.errors import InputError
from deeplab.io import atomic_write
from deeplab.preprocess import Preprocess

# Keys that may differ between a checkpoint's config and the config a run is resumed with.
RESUMABLE_CHANGES = frozenset({
    "train.iterations", "train.checkpoint_every", "train.log_every", "train.val_every", "train.threads",
    "train.device", "data.root", "data.workers", "data.val_split", "data.val_max_images",
})
STRIDE = 8


@dataclass
class TrainResult:
    """iteration: iterations completed; model: the trained network (on the training device, this rank's copy);
    model_path: final model file (None if stopped early or not rank 0); stopped_by: signal number or None."""

    iteration: int
    checkpoint: Path
    model: torch.nn.Module
    model_path: Path | None = None
    stopped_by: int | None = None


class StopSignals:
    """Context manager: the first SIGINT/SIGTERM only sets ``signum`` (the loop checkpoints and stops at the
    end of the iteration); a second one raises KeyboardInterrupt at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def iteration_seed(seed: int, rank: int, iteration: int) -> int:
    """Seed of the torch RNG (dropout) for one iteration of one rank."""
    return int(np.random.SeedSequence([seed, rank, iteration]).generate_state(1)[0])


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, normalizer: float,
                      weight: torch.Tensor | None = None) -> torch.Tensor:
    """Summed (class-weighted) pixel cross-entropy / normalizer.

    logits: (B, C, h, w); target: (B, h, w) int64, 255 = ignored; weight: optional (C,) class weights.
    normalizer: the batch's loss_normalizer, so micro-batch losses add up to the whole batch's mean.
    """
    if logits.shape[-2:] != target.shape[-2:]:
        raise InputError(f"score map {tuple(logits.shape[-2:])} and subsampled labels {tuple(target.shape[-2:])} "
                         "differ: use a crop size 8k+1 (e.g. 321)")
    total = F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / max(normalizer, 1e-12)


def loss_normalizer(targets: list[torch.Tensor], weight: torch.Tensor | None = None) -> float:
    """Number of valid (not 255) target pixels, or with class weights the sum of their weights (at least 1 pixel)."""
    if weight is None:
        return float(max(1, sum(int((y != IGNORE_INDEX).sum()) for y in targets)))
    total = sum(float(weight[y[y != IGNORE_INDEX]].sum()) for y in targets)
    return total if total > 0 else 1.0


def _ignore_sigint(worker_id: int) -> None:
    """DataLoader worker init: leave Ctrl-C (SIGINT to the whole process group) to the main process, which
    finishes its iteration with the workers' batches and checkpoints. (SIGTERM keeps its default: it is
    how the DataLoader stops its workers.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def micro_batches(dataset, sampler: ResumableSampler, pos: Position, micro: int, workers: int) -> Iterator:
    """Endless stream of (input (B, 3, c, c), target (B, h, w)) micro-batches; advances ``pos`` as it yields."""
    while True:
        sampler.set_position(pos)
        dataset.set_epoch(pos.epoch)
        # Own generator: creating the loader must not draw from the global RNG, which seeds dropout.
        loader = DataLoader(dataset, batch_size=micro, sampler=sampler, num_workers=workers, drop_last=True,
                            generator=torch.Generator().manual_seed(pos.epoch), worker_init_fn=_ignore_sigint)
        for x, y in loader:
            pos.consumed += len(x)
            yield x, subsample_labels(y, STRIDE)
        pos.epoch += 1
        pos.consumed = 0


def _config_changes(old: dict, new: dict) -> list[str]:
    """Keys whose values differ; keys added to the schema since ``old`` was saved count at their defaults."""
    old = config_from_dict(old).to_dict()
    return [f"{s}.{k}" for s in new for k in new[s] if old[s][k] != new[s][k]]


def _build(cfg: Config, load_init: bool):
    """(raw data set, seeded augmented data set, model, Preprocess). With model.init the model takes
    torchvision's input convention (and, if load_init, starts from those VGG-16 weights); otherwise Caffe's."""
    from deeplab.data import build_dataset
    from deeplab.models import build_model
    from deeplab.models.torchvision_init import init_from_torchvision, torchvision_preprocess

    raw = build_dataset(cfg.data.dataset, cfg.data.root, cfg.data.split)
    torch.manual_seed(cfg.train.seed)  # initial weights
    model = build_model(cfg.model.arch, raw.num_classes, cfg.model.width, cfg.model.batch_norm)
    preprocess = torchvision_preprocess() if cfg.model.init else Preprocess()
    if cfg.model.init and load_init:
        init_from_torchvision(model, cfg.model.init, seed=cfg.train.seed)
    transform = TrainTransform(cfg.data.crop_size, (cfg.data.scale_min, cfg.data.scale_max), cfg.data.flip, preprocess)
    return raw, SeededDataset(raw, transform, cfg.train.seed), model, preprocess


def train(cfg: Config, out: str | Path, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train (or, with ``resume``, continue training) a model as ``cfg`` says, writing into ``out``."""
    env = D.setup(cfg.train.device)
    finished = False
    try:
        with StopSignals() as stop:
            result = _train(cfg, Path(out), resume, progress, env, stop)
        finished = True
        return result
    finally:
        D.cleanup(env, wait_for_all=finished)


def _train(cfg: Config, out: Path, resume: bool, progress: bool, env: D.DistEnv, stop: StopSignals) -> TrainResult:
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    if t.batch_size % (env.world_size * t.micro_batch):
        raise InputError(f"train.batch_size={t.batch_size} must be a multiple of processes ({env.world_size}) "
                         f"x train.micro_batch ({t.micro_batch})")
    accum = t.batch_size // (env.world_size * t.micro_batch)
    ckpt_path, log_path = out / "checkpoint.pt", out / "log.jsonl"

    raw, dataset, model, preprocess = _build(cfg, load_init=not resume)
    weight = _class_weights(raw) if t.class_weighting == "median_frequency" else None  # (C,) on the CPU
    weight_dev = None if weight is None else weight.to(env.device)
    if resume:
        state = load_state(ckpt_path)
        bad = [k for k in _config_changes(state["config"], cfg.to_dict()) if k not in RESUMABLE_CHANGES]
        if bad:
            raise InputError(f"--resume: config differs from the checkpoint's in {', '.join(bad)} "
                             f"(see {out / 'config.yaml'})")
        model.load_state_dict(state["model"])
        start, pos = state["iteration"], state["position"]
    else:
        if ckpt_path.exists():
            raise InputError(f"{ckpt_path} exists: pass --resume to continue that run, or choose another --out")
        start, pos = 0, Position()
    model.to(env.device).train()
    optimizer = build_optimizer(model, t)
    if resume:
        optimizer.load_state_dict(state["optimizer"])
    net = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[env.device.index] if env.device.type == "cuda" else None) if env.distributed else model

    sampler = ResumableSampler(dataset, env.world_size, env.rank, t.seed)
    if sampler.num_samples < t.micro_batch:
        raise InputError(f"data.split {cfg.data.split!r} has {len(dataset)} samples: too few for "
                         f"{env.world_size} process(es) x train.micro_batch={t.micro_batch}")
    stream = micro_batches(dataset, sampler, pos, t.micro_batch, cfg.data.workers)

    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "config.yaml", lambda f: f.write(dump_config(cfg)), mode="w")
        truncate_log(log_path, start)

    def checkpoint(iteration: int) -> None:
        if env.is_main:
            save_state(ckpt_path, model_state=model.state_dict(), optimizer_state=optimizer.state_dict(),
                       iteration=iteration, position=Position(pos.epoch, pos.consumed), config=cfg.to_dict())
            plot_curves(read_log(log_path), out / "curves.png")

    bar = None
    if progress and env.is_main:
        from tqdm import tqdm

        bar = tqdm(total=t.iterations, initial=start, desc="train", unit="it", dynamic_ncols=True)
    window_loss, window_its, window_time = 0.0, 0, 0.0  # seconds spent in iterations (not val/checkpoints)
    it = start
    try:
        while it < t.iterations:
            tic = time.perf_counter()
            base_lr = lr_at(it, t)
            set_lr(optimizer, base_lr)
            torch.manual_seed(iteration_seed(t.seed, env.rank, it))
            chunks = [next(stream) for _ in range(accum)]
            norm = loss_normalizer([y for _, y in chunks], weight)
            optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            for k, (x, y) in enumerate(chunks):
                sync = nullcontext() if not env.distributed or k == accum - 1 else net.no_sync()
                with sync:
                    loss = segmentation_loss(net(x.to(env.device)), y.to(env.device), norm, weight_dev)
                    loss.backward()
                loss_sum += loss.item()
            if D.any_rank(not math.isfinite(loss_sum), env):
                raise RuntimeError(f"training diverged: loss is {loss_sum} at iteration {it}; lower train.lr")
            optimizer.step()
            window_time += time.perf_counter() - tic
            it += 1
            window_loss += loss_sum
            window_its += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum:.3f}", lr=f"{base_lr:.2g}",
                                img_s=f"{window_its * t.batch_size / window_time:.2f}")
            if it % t.log_every == 0 or it == t.iterations:
                record = {"iteration": it, "loss": D.mean_over_ranks(window_loss / window_its, env), "lr": base_lr,
                          "img_per_s": window_its * t.batch_size / window_time}
                if env.is_main:
                    append_log(log_path, record)
                window_loss, window_its, window_time = 0.0, 0, 0.0
            if t.val_every and it % t.val_every == 0:
                if env.is_main:
                    append_log(log_path, {"iteration": it, **_validate(model, cfg, preprocess)})
                D.barrier(env)
            stopping = D.any_rank(stop.signum is not None, env)
            if stopping or it % t.checkpoint_every == 0 or it == t.iterations:
                checkpoint(it)
            if stopping:
                return TrainResult(it, ckpt_path, model, None, stop.signum or signal.SIGTERM)
    finally:
        stream.close()  # shut the DataLoader workers down now, not at interpreter exit
        if bar is not None:
            bar.close()
    D.broadcast_buffers(model, env)
    if start >= t.iterations:
        checkpoint(it)
    model_path = None
    if env.is_main:
        from deeplab.models import save_model

        model_path = save_model(out / "model.pt", model, classes=raw.classes, palette=raw.palette,
                                preprocess=preprocess, crf=None,
                                extra={"config": cfg.to_dict(), "iterations": it,
                                       "class_weights": None if weight is None else weight.tolist()})
    return TrainResult(it, ckpt_path, model, model_path)


def _class_weights(raw) -> torch.Tensor:
    """(C,) float32 median-frequency weights of a data set's labels (read without the images)."""
    from deeplab.engine.class_weights import class_pixel_counts, median_frequency_weights

    labels = (raw.load_label(i) for i in range(len(raw)))
    return torch.tensor(median_frequency_weights(*class_pixel_counts(labels, raw.num_classes)), dtype=torch.float32)


def _validate(model: torch.nn.Module, cfg: Config, preprocess: Preprocess) -> dict:
    """mIoU and pixel accuracy of ``model`` on data.val_split (its first data.val_max_images images; 0 = all)."""
    from deeplab.data import build_dataset
    from deeplab.engine.evaluate import evaluate, model_probs_fn
    from deeplab.metrics import scores

    val = build_dataset(cfg.data.dataset, cfg.data.root, cfg.data.val_split)
    result = evaluate(val, model_probs_fn(model, preprocess), limit=cfg.data.val_max_images or None, workers=0)
    s = scores(result.conf)
    return {"val_miou": s["miou"], "val_pixel_acc": s["pixel_acc"]}
