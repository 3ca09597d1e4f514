"""Training log (JSON lines) and its curves as a PNG.

Each log line is one record: ``{"iteration": i, "loss": ..., "lr": ..., "img_per_s": ...}`` for training
(i = completed iterations) or ``{"iteration": i, "val_miou": ..., "val_pixel_acc": ...}`` for validation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from deeplab.io import atomic_write


def append_log(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON record (a line) to the log."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_log(path: str | os.PathLike) -> list[dict]:
    """All records of a log; a torn last line (process killed mid-write) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_log(path: str | os.PathLike, iteration: int) -> None:
    """Drop records after ``iteration`` (written by a run killed after its last checkpoint)."""
    path = Path(path)
    if path.is_file():
        keep = [r for r in read_log(path) if r.get("iteration", 0) <= iteration]
        atomic_write(path, lambda f: f.write("".join(json.dumps(r) + "\n" for r in keep)), mode="w")


def plot_curves(records: list[dict], png_path: str | os.PathLike) -> Path:
    """Plot loss (and its running mean), learning rate and validation mIoU against iteration into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if "loss" in r]
    val = [r for r in records if "val_miou" in r]
    panels = 3 if val else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 3.5))
    its = [r["iteration"] for r in train]
    losses = [r["loss"] for r in train]
    axes[0].plot(its, losses, lw=0.8, alpha=0.5, label="loss")
    k = max(1, len(losses) // 20)
    if len(losses) > k:
        smooth = [sum(losses[max(0, i - k + 1):i + 1]) / len(losses[max(0, i - k + 1):i + 1]) for i in range(len(losses))]
        axes[0].plot(its, smooth, lw=1.5, label=f"mean of {k}")
    axes[0].set(xlabel="iteration", ylabel="cross-entropy", title="training loss")
    axes[0].legend()
    axes[1].plot(its, [r["lr"] for r in train])
    axes[1].set(xlabel="iteration", ylabel="base lr", title="learning rate", yscale="log")
    if val:
        axes[2].plot([r["iteration"] for r in val], [r["val_miou"] for r in val], marker="o")
        axes[2].set(xlabel="iteration", ylabel="mIoU", title="validation mIoU")
    fig.tight_layout()
    png_path = Path(png_path)
    atomic_write(png_path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return png_path
