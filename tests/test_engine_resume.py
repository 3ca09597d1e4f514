import json

import pytest
import torch

from deeplab.engine.state import load_state
from deeplab.engine.trainer import train
from deeplab.errors import InputError
from deeplab.models import load_model
from engine_tiny import tiny_config


def weights(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.slow
def test_resumed_run_matches_uninterrupted_run(camvid_tiny, tmp_path):
    """6 iterations straight == 3 iterations + resume to 6: model, BN statistics and momentum carry over,
    dropout and augmentation are re-seeded, and the data order continues mid-epoch (4 images, 2 per batch)."""
    full = train(tiny_config(camvid_tiny, train={"iterations": 6}), tmp_path / "full", progress=False)
    part = train(tiny_config(camvid_tiny, train={"iterations": 3}), tmp_path / "part", progress=False)
    assert part.iteration == 3 and load_state(part.checkpoint)["position"].consumed == 2
    resumed = train(tiny_config(camvid_tiny, train={"iterations": 6}), tmp_path / "part", resume=True, progress=False)
    assert resumed.iteration == 6
    a, b = weights(full.model), weights(resumed.model)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    other = train(tiny_config(camvid_tiny, train={"iterations": 6, "seed": 1}), tmp_path / "other", progress=False)
    assert not torch.equal(weights(other.model)["classifier.weight"], a["classifier.weight"])
    logged = [json.loads(ln)["iteration"] for ln in (tmp_path / "part" / "log.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4, 5, 6]
    saved = load_model(resumed.model_path)
    assert saved.classes[0] == "Sky" and saved.crf is None and saved.meta["extra"]["iterations"] == 6
    for k, v in saved.model.state_dict().items():
        assert torch.equal(v, b[k]), k
    for name in ("checkpoint.pt", "config.yaml", "curves.png", "model.pt"):
        assert (tmp_path / "part" / name).is_file()


def test_resume_guards(camvid_tiny, tmp_path):
    cfg = tiny_config(camvid_tiny, train={"iterations": 1})
    with pytest.raises(InputError, match="training checkpoint not found"):
        train(cfg, tmp_path, resume=True, progress=False)
    train(cfg, tmp_path, progress=False)
    with pytest.raises(InputError, match="--resume"):
        train(cfg, tmp_path, progress=False)
    with pytest.raises(InputError, match=r"train\.lr"):
        train(tiny_config(camvid_tiny, train={"iterations": 2, "lr": 0.5}), tmp_path, resume=True, progress=False)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="checkpoint.pt"):
        train(cfg, tmp_path, resume=True, progress=False)


def test_config_saved_before_a_new_key_still_resumes():
    """A checkpoint's config written before a key existed compares at that key's default."""
    from deeplab.engine.config import config_from_dict
    from deeplab.engine.trainer import _config_changes

    new = config_from_dict({}).to_dict()
    old = {s: dict(v) for s, v in new.items()}
    del old["train"]["class_weighting"]
    assert _config_changes(old, new) == []
    new["train"]["class_weighting"] = "median_frequency"
    assert _config_changes(old, new) == ["train.class_weighting"]
