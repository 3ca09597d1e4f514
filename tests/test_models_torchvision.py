"""ImageNet VGG-16 (torchvision state-dict format) -> DeepLab initialisation, on full-size random weights."""

import pytest
import torch
import torch.nn.functional as F

from deeplab.errors import InputError
from deeplab.models import build_model
from deeplab.models.torchvision_init import TORCHVISION_MEAN_RGB, TORCHVISION_STD_RGB, init_from_torchvision

STAGES = [(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)]


def conv_indices(batch_norm: bool) -> list[int]:
    """features.N index of each conv in torchvision's vgg16 (conv, relu / conv, bn, relu; a pool per stage)."""
    out, i = [], 0
    for n, _ in STAGES:
        for _ in range(n):
            out.append(i)
            i += 3 if batch_norm else 2
        i += 1
    return out


def vgg16_state_dict(batch_norm: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with torchvision vgg16 / vgg16_bn keys and shapes; fc6/fc7 biases = their row index."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    chans = [3] + [c for n, c in STAGES for _ in range(n)]
    for idx, cin, cout in zip(conv_indices(batch_norm), chans[:-1], chans[1:], strict=False):
        sd[f"features.{idx}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * 0.05
        sd[f"features.{idx}.bias"] = torch.randn(cout, generator=g)
        if batch_norm:
            sd[f"features.{idx + 1}.weight"] = torch.rand(cout, generator=g) + 0.5
            sd[f"features.{idx + 1}.bias"] = torch.randn(cout, generator=g)
            sd[f"features.{idx + 1}.running_mean"] = torch.randn(cout, generator=g)
            sd[f"features.{idx + 1}.running_var"] = torch.rand(cout, generator=g) + 0.5
            sd[f"features.{idx + 1}.num_batches_tracked"] = torch.tensor(7)
    sd["classifier.0.weight"] = torch.rand(4096, 25088, generator=g)
    sd["classifier.0.bias"] = torch.arange(4096, dtype=torch.float32)
    sd["classifier.3.weight"] = torch.rand(4096, 4096, generator=g)
    sd["classifier.3.bias"] = torch.arange(4096, dtype=torch.float32)
    sd["classifier.6.weight"] = torch.rand(1000, 4096, generator=g)
    sd["classifier.6.bias"] = torch.zeros(1000)
    return sd


@pytest.fixture(scope="module")
def vgg16():
    return vgg16_state_dict()


def test_conv_layers_copied_and_conv1_folds_normalisation(vgg16):
    model = build_model("deeplab-largefov")
    pre = init_from_torchvision(model, vgg16)
    names = [f"conv{s + 1}_{i + 1}" for s, (n, _) in enumerate(STAGES) for i in range(n)]
    for name, idx in list(zip(names, conv_indices(False), strict=False))[1:]:
        assert torch.equal(getattr(model.backbone, name).conv.weight, vgg16[f"features.{idx}.weight"]), name
        assert torch.equal(getattr(model.backbone, name).conv.bias, vgg16[f"features.{idx}.bias"]), name
    # conv1_1 on our preprocessed input == torchvision's conv1_1 on its normalised [0, 1] input
    image = torch.randint(0, 256, (7, 9, 3), dtype=torch.uint8)
    ours = model.backbone.conv1_1.conv(pre(image.numpy()).unsqueeze(0))
    mean = torch.tensor(TORCHVISION_MEAN_RGB).view(3, 1, 1) / 255
    std = torch.tensor(TORCHVISION_STD_RGB).view(3, 1, 1)
    tv_in = ((image.permute(2, 0, 1).float() / 255 - mean) / std).unsqueeze(0)
    ref = F.conv2d(tv_in, vgg16["features.0.weight"], vgg16["features.0.bias"], padding=1)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    assert pre.bgr is False


def test_largefov_fc6_decimated_3x3_and_1024_channel_subset(vgg16):
    model = build_model("deeplab-largefov")
    init_from_torchvision(model, vgg16, seed=0)
    fc6, fc7 = model.head.fc6.conv, model.head.fc7.conv
    keep6, keep7 = fc6.bias.long(), fc7.bias.long()  # biases were the row indices
    for keep in (keep6, keep7):
        assert len(keep) == 1024 and len(set(keep.tolist())) == 1024 and bool((keep.diff() > 0).all())
    w6 = vgg16["classifier.0.weight"].view(4096, 512, 7, 7)
    assert torch.equal(fc6.weight, w6[keep6][:, :, ::3, ::3])
    assert torch.equal(fc7.weight[:, :, 0, 0], vgg16["classifier.3.weight"][keep7][:, keep6])
    assert abs(model.classifier.weight.std().item() - 0.01) < 0.001 and not model.classifier.bias.any()
    other = build_model("deeplab-largefov")
    init_from_torchvision(other, vgg16, seed=1)
    assert not torch.equal(other.head.fc6.conv.bias, fc6.bias)


@pytest.mark.slow
def test_deeplab_fc6_decimated_4x4(vgg16):
    model = build_model("deeplab")
    init_from_torchvision(model, vgg16)
    w6 = vgg16["classifier.0.weight"].view(4096, 512, 7, 7)
    assert torch.equal(model.head.fc6.conv.weight, w6[:, :, ::2, ::2])
    assert torch.equal(model.head.fc7.conv.weight[:, :, 0, 0], vgg16["classifier.3.weight"])


@pytest.mark.slow
def test_7x7_fc6_is_the_reshaped_fc_layer(vgg16):
    model = build_model("deeplab-7x7")
    init_from_torchvision(model, vgg16)
    fc6 = model.head.fc6.conv
    assert torch.equal(fc6.weight.flatten(1), vgg16["classifier.0.weight"])
    # rate 4 on the stride-8 map = the 7x7 fc6 window of the stride-32 ImageNet net: every 4th pool5 pixel
    feat = torch.randn(1, 512, 25, 25)
    out = fc6(feat)[0, :8, 12, 12]
    patch = feat[0, :, 0:25:4, 0:25:4].reshape(-1)
    torch.testing.assert_close(
        out, vgg16["classifier.0.weight"][:8] @ patch + vgg16["classifier.0.bias"][:8], rtol=1e-4, atol=1e-3
    )


def test_vgg16_bn_format_into_batch_norm_model():
    sd = vgg16_state_dict(batch_norm=True, seed=3)
    model = build_model("deeplab-largefov", batch_norm=True)
    init_from_torchvision(model, sd)
    bn = model.backbone.conv4_2.bn
    idx = conv_indices(True)[8]
    assert torch.equal(bn.running_var, sd[f"features.{idx + 1}.running_var"])
    assert torch.equal(model.backbone.conv4_2.conv.weight, sd[f"features.{idx}.weight"])


def test_rejects_wrong_width_and_foreign_dicts(vgg16, tmp_path):
    with pytest.raises(InputError, match="width=1"):
        init_from_torchvision(build_model("deeplab-largefov", width=0.5), vgg16)
    with pytest.raises(InputError, match="13"):
        init_from_torchvision(build_model("deeplab-largefov", width=0.0625), {"fc.weight": torch.zeros(2, 2)})
    with pytest.raises(InputError, match="not found"):
        init_from_torchvision(build_model("deeplab-largefov", width=0.0625), tmp_path / "vgg16.pth")
