"""Training log (JSON lines) and its curves as a PNG.

Each log line is one record: ``{"iteration": i, "loss": ..., "lr": ..., "img_per_s": ..., "hours": ...}`` for
training (i = completed iterations; hours = time spent in training iterations so far) or ``{"iteration": i,
"val_miou": ..., "val_pixel_acc": ..., "test_miou": ..., "test_pixel_acc": ..., "hours": ...}`` for
validation. Plots use matplotlib's object API (no pyplot): nothing global in the host process changes.
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


PLOTS_EXTRA = "pip install 'deeplab-v1[plots]'"


def plotting_available() -> bool:
    """True when matplotlib (the ``plots`` extra) is installed; plots are skipped, with a note, otherwise."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def figure(width: float, height: float, panels: int):
    """A matplotlib Figure of ``panels`` side-by-side axes, on its own Agg canvas (no pyplot, no global
    backend change). Returns (figure, list of axes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    return fig, list(axes)


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write a Figure as PNG, atomically."""
    fig.tight_layout()
    return atomic_write(Path(path), lambda f: fig.savefig(f, format="png", dpi=100))


def plot_curves(records: list[dict], png_path: str | os.PathLike) -> Path:
    """Plot loss (and its running mean), learning rate and val/test mIoU against iteration (and training hours,
    on a second axis) into a PNG."""
    import numpy as np

    train = [r for r in records if "loss" in r]
    scored = [r for r in records if "val_miou" in r or "test_miou" in r]
    panels = 3 if scored else 2
    fig, axes = figure(4.5 * panels, 3.5, panels)
    its = [r["iteration"] for r in train]
    losses = [r["loss"] for r in train]
    axes[0].plot(its, losses, lw=0.8, alpha=0.5, label="loss")
    k = max(1, len(losses) // 20)
    if len(losses) > k:
        smooth = [
            sum(losses[max(0, i - k + 1) : i + 1]) / len(losses[max(0, i - k + 1) : i + 1]) for i in range(len(losses))
        ]
        axes[0].plot(its, smooth, lw=1.5, label=f"mean of {k}")
    axes[0].set(xlabel="iteration", ylabel="cross-entropy", title="training loss")
    axes[0].legend()
    axes[1].plot(its, [r["lr"] for r in train])
    axes[1].set(xlabel="iteration", ylabel="base lr", title="learning rate", yscale="log")
    if scored:
        for split in ("val", "test"):
            pts = [(r["iteration"], r[f"{split}_miou"]) for r in scored if f"{split}_miou" in r]
            if pts:
                axes[2].plot(*zip(*pts, strict=True), marker="o", ms=3, label=split)
        axes[2].set(xlabel="iteration", ylabel="mIoU", title="mIoU (no CRF)")
        axes[2].legend()
        timed = [(r["iteration"], r["hours"]) for r in records if "hours" in r]
        if len(timed) > 1 and timed[-1][1] > timed[0][1]:
            it_h, h = np.array(timed, dtype=float).T
            top = axes[2].secondary_xaxis(
                "top", functions=(lambda x: np.interp(x, it_h, h), lambda y: np.interp(y, h, it_h))
            )
            top.set_xlabel("training hours")
    return save_figure(fig, png_path)
