"""The ``deeplab segment`` pipeline: images -> DCNN -> dense CRF -> mask files, with the stages overlapped.

A reader thread decodes the next images while the network runs in the main process (consecutive images of
one size go through it ``batch_size`` at a time); the CRF, the argmax, the upsampling to full size (for
images larger than ``max_size``) and the atomic writes of each image run in worker processes (``workers``,
the design of deeplab.engine.evaluate), so the DCNN of image k+1 overlaps the CRF of image k. With
``workers=0`` everything runs inline, one image after the other.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deeplab.data.images import IMAGE_SUFFIXES, load_rgb
from deeplab.errors import InputError
from deeplab.io import atomic_write
from deeplab.outputs import check_planned_files
from deeplab.resize import fit_within, upsampled_labels

PROBS_FORMATS = ("npy", "npz")


@dataclass(frozen=True)
class Job:
    """One input image and the files it gives: mask (palette PNG), overlay (JPEG), probs (float16)."""

    source: Path
    mask: Path
    overlay: Path | None = None
    probs: Path | None = None

    def outputs(self) -> list[Path]:
        return [p for p in (self.mask, self.overlay, self.probs) if p is not None]


def find_images(inputs: list[str], recursive: bool = False) -> tuple[list[tuple[Path, Path]], list[str]]:
    """([(image file, path relative to its input folder or its own name)], errors for missing inputs)."""
    found: list[tuple[Path, Path]] = []
    errors: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(
                p
                for p in path.glob(pattern)
                if p.is_file()
                and p.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not files:
                errors.append(
                    f"{path}: folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
                    + ("" if recursive else "; --recursive searches subfolders")
                )
            found += [(f, f.relative_to(path)) for f in files]
        elif path.is_file():
            found.append((path, Path(path.name)))
        else:
            errors.append(f"input not found: {path}")
    return found, errors


def plan_jobs(found: list[tuple[Path, Path]], out: Path, overlay: bool, save_probs: str | None) -> list[Job]:
    """Output files per image (``out/<relative path without suffix>.png`` ...); InputError before any work if
    two inputs would write the same file, or an output would overwrite an input, be a folder, or be too long."""
    if save_probs is not None and save_probs not in PROBS_FORMATS:
        raise InputError(f"--save-probs must be one of {PROBS_FORMATS}, got {save_probs!r}")
    jobs: list[Job] = []
    seen: dict[Path, Path] = {}
    for source, rel in found:
        stem = out / rel.with_suffix("")
        job = Job(
            source,
            stem.with_name(stem.name + ".png"),
            stem.with_name(stem.name + "_overlay.jpg") if overlay else None,
            stem.with_name(f"{stem.name}_probs.{save_probs}") if save_probs else None,
        )
        if job.mask in seen:
            raise InputError(f"{seen[job.mask]} and {source} would both be written as {job.mask}")
        seen[job.mask] = source
        jobs.append(job)
    check_planned_files([p for j in jobs for p in j.outputs()], [j.source for j in jobs], "-o")
    return jobs


def finish(
    job: Job,
    image: np.ndarray,
    probs: np.ndarray,
    full_size: tuple[int, int],
    crf_fn: Callable | None,
    palette: np.ndarray | None,
    classes: list[str],
) -> dict:
    """CRF (on the working size), labels at full size, atomic writes. image: (h, w, 3) at the working size;
    probs (C, h, w) float32. Returns the image's summary record."""
    from PIL import Image

    from deeplab.data.palette import overlay, save_label_png

    t0 = time.perf_counter()
    if crf_fn is not None:
        probs = crf_fn(image, probs)
    labels = upsampled_labels(probs, full_size)
    crf_s = time.perf_counter() - t0
    save_label_png(job.mask, labels, palette)
    if job.overlay is not None:
        full = image if image.shape[:2] == full_size else load_rgb(job.source)
        mixed = overlay(full, labels, palette)
        atomic_write(job.overlay, lambda f: Image.fromarray(mixed).save(f, format="JPEG", quality=90))
    if job.probs is not None:  # at the working size, float16
        half = probs.astype(np.float16)
        if job.probs.suffix == ".npy":
            atomic_write(job.probs, lambda f: np.save(f, half))
        else:
            atomic_write(job.probs, lambda f: np.savez_compressed(f, probs=half))
    counts = np.bincount(labels.ravel(), minlength=len(classes) or int(labels.max()) + 1)
    names = classes or [str(i) for i in range(len(counts))]
    return {
        "input": str(job.source),
        "mask": str(job.mask),
        "size": [full_size[1], full_size[0]],
        "processed_size": [image.shape[1], image.shape[0]],
        "crf_seconds": round(crf_s, 4),
        "class_fractions": {names[i]: round(float(c) / labels.size, 6) for i, c in enumerate(counts) if c},
    }


def _finish_star(args: tuple) -> dict:
    return finish(*args)


def _read_ahead(jobs: list[Job], depth: int = 4) -> Iterator[tuple[Job, np.ndarray | None, str | None]]:
    """(job, image or None, error or None) in order, decoded by a thread ``depth`` images ahead."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def reader() -> None:
        for job in jobs:
            if stop.is_set():
                return
            item: tuple[Job, np.ndarray | None, str | None]
            try:
                item = (job, load_rgb(job.source), None)
            except InputError as e:
                item = (job, None, str(e))
            q.put(item)
        q.put(None)

    thread = threading.Thread(target=reader, daemon=True, name="deeplab-reader")
    thread.start()
    try:
        while (item := q.get()) is not None:
            yield item
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                q.get_nowait()


@dataclass
class SegmentResult:
    records: list[dict]
    failed: list[str]
    resized: list[str]
    seconds: float


def run(
    jobs: list[Job],
    probs_fn: Callable[[list[np.ndarray]], list[np.ndarray]],
    *,
    crf_fn: Callable | None,
    palette: np.ndarray | None,
    classes: list[str],
    max_size: int = 0,
    batch_size: int = 1,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> SegmentResult:
    """Segment every job. probs_fn: same-size images -> (C, h, w) float32 probabilities each. Read errors are
    recorded (the other images still go through); write errors raise InputError."""
    from deeplab.engine.evaluate import worker_pool

    records: list[dict] = []
    failed: list[str] = []
    resized: list[str] = []
    t_start = time.perf_counter()
    pool_cm = worker_pool(workers) if workers > 0 else contextlib.nullcontext()
    with pool_cm as pool:
        pending: deque = deque()

        def collect(record: dict) -> None:
            record["finished_s"] = round(time.perf_counter() - t_start, 4)  # since the run started
            records.append(record)
            if progress is not None:
                progress(1)

        def submit(batch: list[tuple[Job, np.ndarray, np.ndarray]]) -> None:
            t0 = time.perf_counter()
            all_probs = probs_fn([work for _, _, work in batch])
            dcnn_s = (time.perf_counter() - t0) / len(batch)
            for (job, image, work), probs in zip(batch, all_probs, strict=True):
                args = (job, work, probs, image.shape[:2], crf_fn, palette, classes)
                if pool is None:
                    rec = finish(*args)
                    rec["dcnn_seconds"] = round(dcnn_s, 4)
                    collect(rec)
                else:
                    pending.append((pool.apply_async(_finish_star, (args,)), dcnn_s))
            while len(pending) > max(workers, 1):
                res, d = pending.popleft()
                collect({**res.get(), "dcnn_seconds": round(d, 4)})

        batch: list[tuple[Job, np.ndarray, np.ndarray]] = []
        for job, image, error in _read_ahead(jobs):
            if image is None:
                failed.append(error or str(job.source))
                if progress is not None:
                    progress(1)
                continue
            work = fit_within(image, max_size)
            if work.shape != image.shape:
                resized.append(f"{job.source} ({image.shape[1]}x{image.shape[0]} -> {work.shape[1]}x{work.shape[0]})")
            if batch and (len(batch) >= batch_size or batch[0][2].shape != work.shape):
                submit(batch)
                batch = []
            batch.append((job, image, work))
        if batch:
            submit(batch)
        while pending:
            res, d = pending.popleft()
            collect({**res.get(), "dcnn_seconds": round(d, 4)})
    return SegmentResult(records, failed, resized, time.perf_counter() - t_start)


def write_summary(path: Path, result: SegmentResult, meta: dict) -> Path:
    """The run's summary JSON (atomic): meta, per-image records, failures, totals."""
    n = len(result.records)
    summary = {
        **meta,
        "images": n,
        "failed": result.failed,
        "resized": result.resized,
        "seconds": round(result.seconds, 3),
        "images_per_second": round(n / result.seconds, 3) if n else 0.0,
        "records": result.records,
    }
    return atomic_write(path, lambda f: f.write(json.dumps(summary, indent=1)), mode="w")
