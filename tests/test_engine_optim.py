import itertools

import pytest
import torch

from deeplab.engine.config import TrainConfig
from deeplab.engine.optim import build_optimizer, freeze, frozen_norms, lr_at, param_groups, set_lr
from deeplab.errors import InputError
from deeplab.models import build_model


@pytest.mark.parametrize("batch_norm", [False, True])
def test_param_groups_follow_caffe_lr_and_decay_multipliers(batch_norm):
    """Released prototxts: conv weight lr_mult 1 / decay 1, bias lr_mult 2 / decay 0; fc8 10 / 20."""
    model = build_model("deeplab-largefov", 11, width=0.125, batch_norm=batch_norm)
    groups = param_groups(model, weight_decay=5e-4, classifier_lr_mult=10.0, bias_lr_mult=2.0)
    grouped = [p for g in groups for p in g["params"]]
    assert len(grouped) == len(list(model.parameters())) == len({id(p) for p in grouped})
    by_id = {id(p): g for g in groups for p in g["params"]}
    for name, p in model.named_parameters():
        g = by_id[id(p)]
        layer = 10.0 if name.startswith("classifier.") else 1.0
        if name.endswith("conv.weight") or name == "classifier.weight":
            assert (g["lr_mult"], g["weight_decay"]) == (layer, 5e-4), name
        elif name.endswith("conv.bias") or name == "classifier.bias":
            assert (g["lr_mult"], g["weight_decay"]) == (2 * layer, 0.0), name
        else:  # batch-norm scale and shift
            assert ".bn." in name and (g["lr_mult"], g["weight_decay"]) == (1.0, 0.0), name
    names = {g["name"] for g in groups}
    assert names == {"backbone", "backbone_bias", "classifier", "classifier_bias"} | (
        {"backbone_norm"} if batch_norm else set()
    )


def test_bias_lr_mult_one_gives_plain_layer_rates():
    model = build_model("deeplab-largefov", 11, width=0.125)
    groups = param_groups(model, 5e-4, 10.0, bias_lr_mult=1.0)
    assert sorted({g["lr_mult"] for g in groups}) == [1.0, 10.0]


def test_freeze_by_prefix_leaves_only_the_rest_trainable():
    model = build_model("deeplab-largefov-msc", 5, width=0.125, batch_norm=True)
    frozen = freeze(model, ["backbone", "head", "classifier"])
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("branches.") for n in trainable)
    assert set(frozen) | set(trainable) == {n for n, _ in model.named_parameters()}
    grouped = {id(p) for g in param_groups(model, 5e-4, 10.0, 2.0) for p in g["params"]}
    assert grouped == {id(p) for p in model.parameters() if p.requires_grad}
    norms = frozen_norms(model)
    assert norms and all(not any(p.requires_grad for p in m.parameters()) for m in norms)
    assert len(norms) == 15  # 13 VGG convs + fc6 + fc7; the branches' norms train
    with pytest.raises(InputError, match="'backbon'"):
        freeze(model, ["backbon"])


def test_freezing_everything_is_refused():
    model = build_model("deeplab-largefov", 3, width=0.0625)
    freeze(model, ["backbone", "head", "classifier"])
    with pytest.raises(InputError, match="nothing to train"):
        build_optimizer(model, TrainConfig())


def test_msc_score_layers_get_the_classifier_rate():
    model = build_model("deeplab-largefov-msc", 21, width=0.125)
    fast = {id(p) for g in param_groups(model, 5e-4, 10.0) if g["lr_mult"] == 10.0 for p in g["params"]}
    assert fast == {id(p) for p in model.classifier_parameters()}
    assert len(fast) == 2 * 6  # fc8 + five MSc score convs, weight and bias each


def test_optimizer_lrs_follow_set_lr():
    model = build_model("deeplab-largefov", 11, width=0.125)
    opt = build_optimizer(model, TrainConfig())
    assert opt.defaults["momentum"] == 0.9
    set_lr(opt, 1e-4)
    assert sorted({g["lr"] for g in opt.param_groups}) == pytest.approx([1e-4, 2e-4, 1e-3, 2e-3])


def test_step_schedule_is_the_papers():
    t = TrainConfig()
    got = [lr_at(i, t) for i in (0, 1999, 2000, 3999, 4000, 5999)]
    assert got == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5])


def test_poly_schedule():
    t = TrainConfig(schedule="poly", lr=0.02, iterations=100, power=0.9)
    assert lr_at(0, t) == 0.02
    assert lr_at(50, t) == pytest.approx(0.02 * 0.5**0.9)
    assert lr_at(99, t) == pytest.approx(0.02 * 0.01**0.9)
    lrs = [lr_at(i, t) for i in range(100)]
    assert all(a > b for a, b in itertools.pairwise(lrs))


def test_sgd_step_matches_hand_update():
    """One step: w <- w - lr * (g + wd * w) (momentum buffer starts at the gradient); fc8 at x10, its bias x20."""
    model = build_model("deeplab-largefov", 3, width=0.0625)
    t = TrainConfig(lr=0.1, classifier_lr_mult=10.0, weight_decay=0.5, bias_lr_mult=2.0)
    opt = build_optimizer(model, t)
    w0, b0 = model.classifier.weight.detach().clone(), model.classifier.bias.detach().clone()
    model(torch.randn(1, 3, 17, 17)).sum().backward()
    gw, gb = model.classifier.weight.grad.clone(), model.classifier.bias.grad.clone()
    opt.step()
    torch.testing.assert_close(model.classifier.weight.detach(), w0 - 1.0 * (gw + 0.5 * w0))
    torch.testing.assert_close(model.classifier.bias.detach(), b0 - 2.0 * gb)
