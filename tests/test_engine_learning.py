import json

import numpy as np
import pytest

from deeplab.data import build_dataset
from deeplab.engine.trainer import train
from deeplab.models import predict
from engine_tiny import tiny_config


@pytest.mark.slow
def test_training_learns_camvid_images(camvid_tiny, tmp_path):
    """A width-1/16 LargeFOV (BN, from scratch) trained 30 iterations on 4 CamVid frames (120x90, 97 px crops):
    the loss falls and whole-image pixel accuracy on those images rises well above the majority-class rate."""
    root = camvid_tiny
    cfg = tiny_config(
        root,
        data={"crop_size": 97, "scale_min": 1.0, "scale_max": 1.0},
        train={
            "iterations": 30,
            "batch_size": 4,
            "micro_batch": 4,
            "lr": 0.05,
            "schedule": "poly",
            "log_every": 5,
            "checkpoint_every": 1000,
            "threads": 2,
        },
    )
    result = train(cfg, tmp_path / "run", progress=False)
    losses = [json.loads(ln)["loss"] for ln in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 6
    assert losses[-1] < 0.75 * losses[0]  # ln(11) = 2.40 at chance

    data = build_dataset("camvid", root, "train")
    hits = total = majority = 0
    for i in range(len(data)):
        image, label = data.sample(i)
        pred = predict(result.model, image).argmax(0)
        valid = label != 255
        hits += int((pred[valid] == label[valid]).sum())
        total += int(valid.sum())
        majority += int(np.bincount(label[valid]).max())
    assert majority / total < 0.45
    assert hits / total > majority / total + 0.15
