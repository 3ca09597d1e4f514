"""model.init from a trained deeplab model and train.freeze: the paper's two-stage MSc recipe."""

import json

import pytest
import torch

from deeplab.engine.trainer import segmentation_loss, train
from deeplab.errors import InputError
from deeplab.models import build_model, load_model, upsample_logits
from engine_tiny import tiny_config


@pytest.fixture(scope="module")
def stage1(camvid_tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1")
    train(tiny_config(camvid_tiny, train={"iterations": 2}), out, progress=False)
    return out / "model.pt"


def test_msc_stage2_trains_only_the_branches(camvid_tiny, stage1, tmp_path):
    cfg = tiny_config(
        camvid_tiny,
        model={"arch": "deeplab-largefov-msc", "init": str(stage1)},
        train={"iterations": 2, "freeze": ["backbone", "head", "classifier"]},
    )
    result = train(cfg, tmp_path / "run", progress=False)
    before = load_model(stage1).model.state_dict()
    after = load_model(result.model_path).model.state_dict()
    for name, tensor in before.items():  # weights and batch-norm running statistics
        torch.testing.assert_close(after[name], tensor, rtol=0, atol=0, msg=name)
    fresh = build_model("deeplab-largefov-msc", 11, 0.0625, True).state_dict()
    changed = [
        n
        for n in after
        if n.startswith("branches.") and n.endswith("conv.weight") and not torch.equal(after[n], fresh[n])
    ]
    assert len(changed) == 5  # every branch learned (from the same seeded initialisation)


def test_init_from_a_model_needs_the_same_width_and_classes(camvid_tiny, stage1, tmp_path):
    with pytest.raises(InputError, match="width"):
        train(tiny_config(camvid_tiny, model={"init": str(stage1), "width": 0.125}), tmp_path / "a", progress=False)
    with pytest.raises(InputError, match="has no counterpart"):  # an MSc model into a plain one
        msc = tmp_path / "msc"
        train(
            tiny_config(camvid_tiny, model={"arch": "deeplab-largefov-msc"}, train={"iterations": 1}),
            msc,
            progress=False,
        )
        train(tiny_config(camvid_tiny, model={"init": str(msc / "model.pt")}), tmp_path / "b", progress=False)


def test_interrupted_checkpoint_is_a_model_file(camvid_tiny, tmp_path):
    """checkpoint.pt of a run that has not finished loads as a model and starts another run."""
    run = tmp_path / "run"
    train(tiny_config(camvid_tiny, train={"iterations": 2, "checkpoint_every": 1}), run, progress=False)
    (run / "model.pt").unlink()
    loaded = load_model(run / "checkpoint.pt")
    assert loaded.classes[0] == "Sky" and loaded.palette.shape == (11, 3)
    assert loaded.meta["extra"]["iterations"] == 2
    train(
        tiny_config(camvid_tiny, model={"init": str(run / "checkpoint.pt")}, train={"iterations": 1}),
        tmp_path / "next",
        progress=False,
    )


def test_bf16_full_resolution_loss_and_test_curve(camvid_tiny, tmp_path):
    cfg = tiny_config(
        camvid_tiny,
        data={"val_split": "train", "test_split": "train", "val_max_images": 2},
        train={
            "iterations": 2,
            "precision": "bf16",
            "loss_resolution": "image",
            "val_every": 2,
            "class_weighting": "enet",
        },
    )
    train(cfg, tmp_path / "run", progress=False)
    log = [json.loads(ln) for ln in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    scored = [r for r in log if "test_miou" in r]
    assert len(scored) == 1 and 0 <= scored[0]["val_miou"] <= 1 and scored[0]["hours"] > 0
    assert all(r["loss"] > 0 for r in log if "loss" in r)


def test_full_resolution_loss_is_cross_entropy_of_the_upsampled_scores():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 5, 6)
    target = torch.randint(0, 5, (2, 33, 41))
    target[0, :4] = 255
    valid = int((target != 255).sum())
    expected = torch.nn.functional.cross_entropy(upsample_logits(logits, (33, 41)), target, ignore_index=255)
    torch.testing.assert_close(segmentation_loss(logits, target, valid), expected)
