"""Regenerate the README's figures of the shipped model from a finished CamVid run.

    python benchmarks/docs_figures.py runs/camvid_default [--model src/deeplab/weights/deeplab_camvid.pt]

docs/camvid_examples.jpg: the bundled example frames and the model's DCNN+CRF overlays, side by side.
docs/camvid_train_curves.png: the run's learning curve (training loss; val and test mIoU without the CRF
against iterations, training hours on the top axis). docs/camvid_trimap.png: the run's test trimap plot
(written by `deeplab evaluate --trimap` into RUN/test/).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def examples_figure(model_path: str, out: Path) -> None:
    from deeplab.crf import CRFParams
    from deeplab.data.images import load_rgb
    from deeplab.data.palette import overlay
    from deeplab.models import load_model, segment

    loaded = load_model(model_path)
    tiles = []
    for path in sorted((REPO / "examples").glob("*.jpg")):
        image = load_rgb(path)
        labels = segment(image, loaded, crf=True, crf_params=CRFParams.from_dict(loaded.crf or {})).numpy()
        tiles.append(np.concatenate([image, overlay(image, labels, loaded.palette)], axis=1))
    grid = np.concatenate(tiles, axis=0)
    Image.fromarray(grid).resize((grid.shape[1] // 2, grid.shape[0] // 2), Image.Resampling.BOX).save(out, quality=88)


def curves_figure(run: Path, out: Path) -> None:
    import numpy as np

    from deeplab.engine.plots import figure, read_log, save_figure

    records = read_log(run / "log.jsonl")
    train = [r for r in records if "loss" in r]
    scored = [r for r in records if "test_miou" in r]
    fig, (ax_loss, ax_miou) = figure(11, 4, 2)
    its = np.array([r["iteration"] for r in train])
    loss = np.array([r["loss"] for r in train])
    k = max(1, len(loss) // 50)
    ax_loss.plot(its, loss, lw=0.5, alpha=0.4, label="loss (per 20 iterations)")
    ax_loss.plot(its[k - 1 :], np.convolve(loss, np.ones(k) / k, mode="valid"), lw=1.5, label=f"mean of {k}")
    ax_loss.set(xlabel="iteration", ylabel="weighted cross-entropy", title="training loss", yscale="log")
    ax_loss.legend()
    for split in ("val", "test"):
        ax_miou.plot(
            [r["iteration"] for r in scored],
            [100 * r[f"{split}_miou"] for r in scored],
            marker="o",
            ms=3,
            label=f"CamVid {split}",
        )
    ax_miou.set(xlabel="iteration", ylabel="mIoU (%), no CRF", title="learning curve")
    ax_miou.grid(True, alpha=0.3)
    ax_miou.legend()
    it_h = np.array([r["iteration"] for r in records if "hours" in r], float)
    hours = np.array([r["hours"] for r in records if "hours" in r], float)
    top = ax_miou.secondary_xaxis(
        "top", functions=(lambda x: np.interp(x, it_h, hours), lambda y: np.interp(y, hours, it_h))
    )
    top.set_xlabel("training hours (one core)")
    save_figure(fig, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--model", default=None, help="model file (default: RUN/model.pt)")
    args = ap.parse_args()
    docs = REPO / "docs"
    examples_figure(args.model or str(args.run / "model.pt"), docs / "camvid_examples.jpg")
    curves_figure(args.run, docs / "camvid_train_curves.png")
    shutil.copyfile(args.run / "test" / "trimap.png", docs / "camvid_trimap.png")
    print(
        "wrote",
        ", ".join(str(docs / n) for n in ("camvid_examples.jpg", "camvid_train_curves.png", "camvid_trimap.png")),
    )


if __name__ == "__main__":
    main()
