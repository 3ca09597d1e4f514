import dataclasses
from pathlib import Path

import pytest

from deeplab.engine.config import Config, config_from_dict, dump_config, load_config, parse_overrides
from deeplab.errors import InputError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_are_the_papers_recipe():
    t = Config().train
    assert (t.lr, t.classifier_lr_mult, t.momentum, t.weight_decay) == (1e-3, 10.0, 0.9, 5e-4)
    assert (t.schedule, t.step_size, t.gamma, t.iterations, t.batch_size) == ("step", 2000, 0.1, 6000, 20)
    assert Config().data.crop_size == 321


def test_voc_config_is_the_paper_recipe_with_torchvision_init():
    c = load_config(CONFIGS / "voc12_largefov.yaml")
    assert c.model.arch == "deeplab-largefov" and c.model.init and not c.model.batch_norm
    assert (c.data.dataset, c.data.split, c.data.crop_size) == ("voc", "train_aug", 321)
    cadence = {k: getattr(c.train, k) for k in ("checkpoint_every", "log_every", "val_every")}
    assert c.train == dataclasses.replace(Config().train, **cadence)


def test_camvid_cpu_config_loads():
    c = load_config(CONFIGS / "camvid_largefov_cpu.yaml")
    assert c.data.dataset == "camvid" and c.model.batch_norm and c.model.init is None and c.model.width < 1


def test_overrides_are_parsed_as_yaml_and_win(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lr: 1e-3\n  iterations: 10\nmodel:\n  init: vgg.pth\n")
    c = load_config(p, ["train.lr=0.02", "train.schedule=poly", "model.init=null", "data.flip=false"])
    assert (c.train.lr, c.train.schedule, c.model.init, c.data.flip, c.train.iterations) == (
        0.02,
        "poly",
        None,
        False,
        10,
    )
    assert isinstance(c.train.lr, float)
    assert parse_overrides(["a.b=[1, 2]"]) == {"a": {"b": [1, 2]}}


def test_dump_roundtrip(tmp_path):
    c = config_from_dict({"train": {"lr": 0.05, "schedule": "poly"}, "data": {"val_split": "val"}})
    p = tmp_path / "c.yaml"
    p.write_text(dump_config(c))
    assert load_config(p) == c


@pytest.mark.parametrize(
    "d, key",
    [
        ({"train": {"lrr": 0.1}}, "train.lrr"),
        ({"trian": {}}, "trian"),
        ({"train": {"lr": "fast"}}, "train.lr"),
        ({"train": {"lr": ".inf"}}, "train.lr"),
        ({"train": {"lr": float("nan")}}, "train.lr"),
        ({"train": {"iterations": 1.5}}, "train.iterations"),
        ({"data": {"flip": "yes"}}, "data.flip"),
        ({"train": {"lr": -1}}, "train.lr"),
        ({"train": {"schedule": "cosine"}}, "train.schedule"),
        ({"train": {"batch_size": 20, "micro_batch": 3}}, "train.micro_batch"),
        ({"data": {"crop_size": 320}}, "data.crop_size"),
        ({"train": {"val_every": 100}}, "train.val_every"),
        ({"train": {"device": "tpu"}}, "train.device"),
        ({"train": {"class_weighting": "inverse"}}, "train.class_weighting"),
    ],
)
def test_validation_names_the_bad_key(d, key):
    with pytest.raises(InputError, match=key.replace(".", r"\.")):
        config_from_dict(d)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(InputError, match="bad.yaml"):
        load_config(bad)
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  momentum: 2\n")
    with pytest.raises(InputError, match=r"c\.yaml: train\.momentum"):
        load_config(p)
    with pytest.raises(InputError, match="section.key=value"):
        load_config(p, ["lr=0.1"])


def test_msc_stage2_config_freezes_the_trained_deeplab():
    c = load_config(CONFIGS / "voc12_largefov_msc.yaml")
    assert c.model.arch == "deeplab-largefov-msc" and c.model.init.endswith("model.pt")
    assert c.train.freeze == ["backbone", "head", "classifier"]
    assert c.train.bias_lr_mult == 2 and c.train.classifier_lr_mult == 10  # Caffe's lr_mult 2 / 20


def test_caffe_bias_multipliers_are_the_default_and_switchable():
    assert Config().train.bias_lr_mult == 2.0
    assert config_from_dict({"train": {"bias_lr_mult": 1}}).train.bias_lr_mult == 1.0
    assert config_from_dict({"train": {"freeze": "backbone"}}).train.freeze == ["backbone"]
    with pytest.raises(InputError, match="train.freeze"):
        config_from_dict({"train": {"freeze": 3}})
