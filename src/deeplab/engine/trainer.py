"""The training loop: SGD on the stride-8 score map against ground truth subsampled by 8 (paper Sec. 4).

Output folder (``out``): config.yaml (the resolved config), checkpoint.pt (training state, atomic, every
train.checkpoint_every iterations, on SIGINT/SIGTERM and at the end; a model file too: ``--model
checkpoint.pt`` works everywhere), log.jsonl + curves.png (loss, lr, val/test mIoU), model.pt (the final
model, deeplab.models.save_model format) when the run completes.
Runs under torchrun with DistributedDataParallel; only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import signal
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from deeplab.data.base import IGNORE_INDEX
from deeplab.data.transforms import SeededDataset, TrainTransform, subsample_labels
from deeplab.engine import distributed as D
from deeplab.engine.config import Config, config_from_dict, dump_config
from deeplab.engine.optim import build_optimizer, freeze, frozen_norms, lr_at, set_lr
from deeplab.engine.plots import PLOTS_EXTRA, append_log, plot_curves, plotting_available, read_log, truncate_log
from deeplab.engine.sampler import Position, ResumableSampler
from deeplab.engine.state import load_state, save_state
from deeplab.errors import InputError
from deeplab.io import atomic_write, clean_temp_files
from deeplab.outputs import check_output_dir
from deeplab.preprocess import Preprocess

if TYPE_CHECKING:
    from deeplab.models.deeplab import DeepLab

# Keys that may differ between a checkpoint's config and the config a run is resumed with.
RESUMABLE_CHANGES = frozenset(
    {
        "train.iterations",
        "train.checkpoint_every",
        "train.log_every",
        "train.val_every",
        "train.threads",
        "train.device",
        "data.root",
        "data.workers",
        "data.val_split",
        "data.val_max_images",
    }
)
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
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopSignals:
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


def segmentation_loss(
    logits: torch.Tensor, target: torch.Tensor, normalizer: float, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Summed (class-weighted) pixel cross-entropy / normalizer.

    logits: (B, C, h, w) stride-8 scores; target: (B, h, w) int64, 255 = ignored: the labels subsampled to the
    score map, or (B, 8h-7, 8w-7) full-resolution labels, against which the scores are upsampled x8 first.
    weight: optional (C,) class weights. normalizer: the batch's loss_normalizer, so micro-batch losses add
    up to the whole batch's mean.
    """
    h, w = logits.shape[-2:]
    if target.shape[-2:] == (8 * h - 7, 8 * w - 7) and (h, w) != (1, 1):
        from deeplab.models import upsample_logits

        logits = upsample_logits(logits, (int(target.shape[-2]), int(target.shape[-1])))
    if logits.shape[-2:] != target.shape[-2:]:
        raise InputError(
            f"score map {tuple(logits.shape[-2:])} and subsampled labels {tuple(target.shape[-2:])} "
            "differ: use a crop size 8k+1 (e.g. 321)"
        )
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


def micro_batches(
    dataset, sampler: ResumableSampler, pos: Position, micro: int, workers: int, stride: int = STRIDE
) -> Generator:
    """Endless stream of (input (B, 3, c, c), target (B, h, w)) micro-batches, labels subsampled by ``stride``
    (1: full resolution); advances ``pos`` as it yields."""
    while True:
        sampler.set_position(pos)
        dataset.set_epoch(pos.epoch)
        # Own generator: creating the loader must not draw from the global RNG, which seeds dropout.
        loader = DataLoader(
            dataset,
            batch_size=micro,
            sampler=sampler,
            num_workers=workers,
            drop_last=True,
            generator=torch.Generator().manual_seed(pos.epoch),
            worker_init_fn=_ignore_sigint,
        )
        for x, y in loader:
            pos.consumed += len(x)
            yield x, subsample_labels(y, stride)
        pos.epoch += 1
        pos.consumed = 0


def _config_changes(old: dict, new: dict) -> list[str]:
    """Keys whose values differ; keys added to the schema since ``old`` was saved count at their defaults."""
    old = config_from_dict(old).to_dict()
    return [f"{s}.{k}" for s in new for k in new[s] if old[s][k] != new[s][k]]


def _build(cfg: Config):
    """(raw data set, freshly initialised model) of a config."""
    from deeplab.data import build_dataset
    from deeplab.models import build_model

    raw = build_dataset(cfg.data.dataset, cfg.data.root, cfg.data.split)
    torch.manual_seed(cfg.train.seed)  # initial weights
    return raw, build_model(cfg.model.arch, raw.num_classes, cfg.model.width, cfg.model.batch_norm)


def _start(model: DeepLab, cfg: Config) -> Preprocess:
    """model.init into ``model`` (none: Caffe's input convention); returns the Preprocess it trains in."""
    if not cfg.model.init:
        return Preprocess()
    from deeplab.models.warm_start import init_weights

    preprocess, fresh = init_weights(model, cfg.model.init, seed=cfg.train.seed)
    print(
        f"model.init: {cfg.model.init}; {len(fresh)} tensors start fresh ({', '.join(fresh[:6])}"
        f"{', ...' if len(fresh) > 6 else ''})",
        flush=True,
    )
    return preprocess


def _resumed_preprocess(state: dict, cfg: Config) -> Preprocess:
    """The Preprocess of a resumed run: stored in its checkpoint (older checkpoints: implied by model.init)."""
    meta = state.get("meta") or {}
    if "preprocess" in meta:
        return Preprocess.from_dict(meta["preprocess"])
    if not cfg.model.init:
        return Preprocess()
    from deeplab.models.warm_start import init_preprocess

    return init_preprocess(cfg.model.init)


@contextlib.contextmanager
def run_folder_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.lock`` (an flock, released when the process ends, however it ends) for the whole run: a second
    training into the same folder is refused while the first runs. Removes the temporary files of an
    interrupted earlier run."""
    check_output_dir(out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise InputError(
                f"--out {out}: another training (pid {owner}) is writing into this folder; "
                "wait for it to finish or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        clean_temp_files(out)
        yield
    finally:
        os.close(fd)


def train(cfg: Config, out: str | Path, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train (or, with ``resume``, continue training) a model as ``cfg`` says, writing into ``out``."""
    env = D.setup(cfg.train.device)
    finished = False
    try:
        with run_folder_lock(Path(out)) if env.is_main else contextlib.nullcontext(), StopSignals() as stop:
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
        raise InputError(
            f"train.batch_size={t.batch_size} must be a multiple of processes ({env.world_size}) "
            f"x train.micro_batch ({t.micro_batch})"
        )
    accum = t.batch_size // (env.world_size * t.micro_batch)
    ckpt_path, log_path = out / "checkpoint.pt", out / "log.jsonl"

    raw, model = _build(cfg)
    weight = _class_weights(raw, t.class_weighting)  # (C,) on the CPU, or None
    weight_dev = None if weight is None else weight.to(env.device)
    if resume:
        state = load_state(ckpt_path)
        bad = [k for k in _config_changes(state["config"], cfg.to_dict()) if k not in RESUMABLE_CHANGES]
        if bad:
            raise InputError(
                f"--resume: config differs from the checkpoint's in {', '.join(bad)} (see {out / 'config.yaml'})"
            )
        model.load_state_dict(state["model"])
        preprocess = _resumed_preprocess(state, cfg)
        start, pos = state["iteration"], state["position"]
        elapsed = float(state.get("train_seconds", 0.0))
    else:
        if ckpt_path.exists():
            raise InputError(f"{ckpt_path} exists: pass --resume to continue that run, or choose another --out")
        preprocess = _start(model, cfg)
        start, pos, elapsed = 0, Position(), 0.0
    transform = TrainTransform(cfg.data.crop_size, (cfg.data.scale_min, cfg.data.scale_max), cfg.data.flip, preprocess)
    dataset = SeededDataset(raw, transform, t.seed)
    freeze(model, t.freeze)
    norms = frozen_norms(model)
    memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
    model.to(env.device, memory_format=memory_format).train()
    autocast = torch.autocast(env.device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16")
    optimizer = build_optimizer(model, t)
    if resume:
        optimizer.load_state_dict(state["optimizer"])
    net = (
        torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[env.device.index] if env.device.type == "cuda" else None
        )
        if env.distributed
        else model
    )

    sampler = ResumableSampler(dataset, env.world_size, env.rank, t.seed)
    if sampler.num_samples < t.micro_batch:
        raise InputError(
            f"data.split {cfg.data.split!r} has {len(dataset)} samples: too few for "
            f"{env.world_size} process(es) x train.micro_batch={t.micro_batch}"
        )
    stream = micro_batches(
        dataset, sampler, pos, t.micro_batch, cfg.data.workers, STRIDE if t.loss_resolution == "score_map" else 1
    )
    meta = {
        "classes": list(raw.classes),
        "palette": np.asarray(raw.palette).tolist(),
        "preprocess": preprocess.to_dict(),
    }

    if env.is_main:
        if not plotting_available():
            print(f"deeplab train: matplotlib is not installed: no curves.png ({PLOTS_EXTRA})", flush=True)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "config.yaml", lambda f: f.write(dump_config(cfg)), mode="w")
        truncate_log(log_path, start)

    def checkpoint(iteration: int) -> None:
        if env.is_main:
            save_state(
                ckpt_path,
                model_state=model.state_dict(),
                optimizer_state=optimizer.state_dict(),
                iteration=iteration,
                position=Position(pos.epoch, pos.consumed),
                config=cfg.to_dict(),
                meta=meta,
                train_seconds=elapsed,
            )
            if plotting_available():
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
            for m in norms:  # frozen layers keep their statistics (also after a validation's eval/train switch)
                m.eval()
            chunks = [next(stream) for _ in range(accum)]
            norm = loss_normalizer([y for _, y in chunks], weight)
            optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            for k, (x, y) in enumerate(chunks):
                sync = contextlib.nullcontext() if not env.distributed or k == accum - 1 else net.no_sync()
                with sync:
                    with autocast:
                        logits = net(x.to(env.device, memory_format=memory_format))
                    loss = segmentation_loss(logits.float(), y.to(env.device), norm, weight_dev)
                    loss.backward()
                loss_sum += loss.item()
            if D.any_rank(not math.isfinite(loss_sum), env):
                raise InputError(
                    f"training diverged: loss is {loss_sum} at iteration {it}; lower train.lr "
                    f"(now {t.lr}); the last good state is {ckpt_path}"
                )
            optimizer.step()
            window_time += time.perf_counter() - tic
            elapsed += time.perf_counter() - tic
            it += 1
            window_loss += loss_sum
            window_its += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    loss=f"{loss_sum:.3f}", lr=f"{base_lr:.2g}", img_s=f"{window_its * t.batch_size / window_time:.2f}"
                )
            if it % t.log_every == 0 or it == t.iterations:
                record = {
                    "iteration": it,
                    "loss": D.mean_over_ranks(window_loss / window_its, env),
                    "lr": base_lr,
                    "img_per_s": window_its * t.batch_size / window_time,
                    "hours": elapsed / 3600,
                }
                if env.is_main:
                    append_log(log_path, record)
                window_loss, window_its, window_time = 0.0, 0, 0.0
            if t.val_every and it % t.val_every == 0:
                if env.is_main:
                    append_log(
                        log_path, {"iteration": it, **_validate(model, cfg, preprocess), "hours": elapsed / 3600}
                    )
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

        model_path = save_model(
            out / "model.pt",
            model,
            classes=raw.classes,
            palette=raw.palette,
            preprocess=preprocess,
            crf=None,
            extra={
                "config": cfg.to_dict(),
                "iterations": it,
                "class_weights": None if weight is None else weight.tolist(),
            },
        )
    return TrainResult(it, ckpt_path, model, model_path)


def _class_weights(raw, kind: str) -> torch.Tensor | None:
    """(C,) float32 loss weights of train.class_weighting from a data set's labels (read without the images)."""
    from deeplab.engine.class_weights import class_pixel_counts, enet_weights, median_frequency_weights

    if kind == "none":
        return None
    counts, present_in = class_pixel_counts((raw.load_label(i) for i in range(len(raw))), raw.num_classes)
    w = median_frequency_weights(counts, present_in) if kind == "median_frequency" else enet_weights(counts)
    return torch.tensor(w, dtype=torch.float32)


def _validate(model: torch.nn.Module, cfg: Config, preprocess: Preprocess) -> dict:
    """mIoU and pixel accuracy of ``model`` on data.val_split (its first data.val_max_images images; 0 = all)
    and on data.test_split (every image)."""
    from deeplab.data import build_dataset
    from deeplab.engine.evaluate import evaluate, model_probs_fn
    from deeplab.metrics import scores

    out = {}
    for prefix, split, limit in (
        ("val", cfg.data.val_split, cfg.data.val_max_images),
        ("test", cfg.data.test_split, 0),
    ):
        if split is not None:
            data = build_dataset(cfg.data.dataset, cfg.data.root, split)
            result = evaluate(data, model_probs_fn(model, preprocess, backend="eager"), limit=limit or None, workers=0)
            if result.conf is None:
                continue
            s = scores(result.conf)
            out.update({f"{prefix}_miou": s["miou"], f"{prefix}_pixel_acc": s["pixel_acc"]})
    return out
