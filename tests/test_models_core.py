"""DeepLab v1 DCNN: architecture, parameter counts, output geometry, inference and checkpoints."""

import numpy as np
import pytest
import torch

from deeplab.errors import InputError
from deeplab.models import (
    aligned_size,
    build_model,
    list_models,
    load_model,
    output_size,
    predict,
    save_model,
    upsample_logits,
)
from deeplab.preprocess import Preprocess

torch.set_num_threads(2)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "arch,expected",
    [
        ("deeplab-7x7", 134_346_581),
        ("deeplab", 65_140_565),
        ("deeplab-4x4", 65_140_565),
        ("deeplab-largefov", 20_505_429),
    ],
)
@pytest.mark.slow
def test_parameter_counts_match_paper(arch, expected):
    model = build_model(arch, num_classes=21)
    assert n_params(model) == expected
    assert n_params(model.backbone) == 14_714_688  # VGG-16 conv1_1..conv5_3


def test_msc_adds_two_layer_mlps_and_score_convs():
    base, msc = build_model("deeplab-largefov"), build_model("deeplab-largefov-msc")
    cins = [3, 64, 128, 256, 512]
    mlp = sum(c * 128 * 9 + 128 + 128 * 128 + 128 for c in cins)
    score = 5 * (128 * 21 + 21)
    assert n_params(msc) - n_params(base) == mlp + score
    assert sorted(msc.branches) == ["data", "pool1", "pool2", "pool3", "pool4"]


def test_registry_names_and_bad_arch():
    names = list_models()
    for base in ("deeplab", "deeplab-4x4", "deeplab-7x7", "deeplab-largefov"):
        assert base in names and base + "-msc" in names
    with pytest.raises(InputError, match="unknown arch"):
        build_model("deeplab-huge")


def test_fc6_geometry_per_variant():
    fc6 = {
        a: build_model(a, width=0.0625).head.fc6.conv
        for a in ("deeplab", "deeplab-4x4", "deeplab-7x7", "deeplab-largefov")
    }
    assert (fc6["deeplab"].kernel_size, fc6["deeplab"].dilation, fc6["deeplab"].padding) == ((4, 4), (4, 4), (6, 6))
    assert (fc6["deeplab-4x4"].kernel_size, fc6["deeplab-4x4"].dilation) == ((4, 4), (8, 8))
    assert (fc6["deeplab-7x7"].kernel_size, fc6["deeplab-7x7"].dilation) == ((7, 7), (4, 4))
    assert (fc6["deeplab-largefov"].kernel_size, fc6["deeplab-largefov"].dilation) == ((3, 3), (12, 12))


@pytest.mark.parametrize("arch", list_models())
def test_output_stride_8_every_variant(arch):
    model = build_model(arch, num_classes=5, width=0.0625).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 321, 161)).shape == (1, 5, 41, 21)
        assert model(torch.randn(1, 3, 50, 67)).shape == (1, 5, output_size(50), output_size(67))


def test_output_size_formula():
    assert output_size(321) == 41 and output_size(513) == 65
    assert [output_size(n) for n in (1, 2, 9, 10)] == [1, 2, 2, 3]
    assert aligned_size(500) == 505 and aligned_size(321) == 321
    assert all((aligned_size(n) - 1) % 8 == 0 and 0 <= aligned_size(n) - n < 8 for n in range(1, 100))


def test_513_input_gives_65():
    model = build_model("deeplab-largefov", width=0.0625).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 513, 513)).shape[-2:] == (65, 65)


def test_pooling_is_caffe_ceil_mode():
    bb = build_model("deeplab", width=0.0625).backbone
    for i, stride in zip(range(1, 6), (2, 2, 2, 1, 1), strict=False):
        pool = getattr(bb, f"pool{i}")
        assert (pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode) == (3, stride, 1, True)
    assert all(getattr(bb, f"conv5_{i}").conv.dilation == (2, 2) for i in (1, 2, 3))


def test_upsample_matches_caffe_interp_reference():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1, 2, 4, 5)).astype(np.float32)
    up = upsample_logits(torch.from_numpy(logits), (23, 30)).numpy()
    assert up.shape == (1, 2, 23, 30)
    # Caffe Interp (align corners) to 8h-7: output pixel i samples input position i/8.
    for i, j in [(0, 0), (3, 7), (8, 16), (22, 29), (13, 2)]:
        y, x = i / 8, j / 8
        y0, x0 = int(y), int(x)
        y1, x1 = min(y0 + 1, 3), min(x0 + 1, 4)
        fy, fx = y - y0, x - x0
        ref = (
            (1 - fy) * (1 - fx) * logits[0, :, y0, x0]
            + (1 - fy) * fx * logits[0, :, y0, x1]
            + fy * (1 - fx) * logits[0, :, y1, x0]
            + fy * fx * logits[0, :, y1, x1]
        )
        np.testing.assert_allclose(up[0, :, i, j], ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError):
        upsample_logits(torch.from_numpy(logits), (26, 30))


def test_predict_pads_with_mean_and_crops():
    torch.manual_seed(0)
    model = build_model("deeplab-largefov-msc", num_classes=3, width=0.0625).eval()
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(37, 50, 3), dtype=np.uint8)
    probs = predict(model, image)
    assert probs.shape == (3, 37, 50) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    # Same as running the image zero-padded (= mean colour) to the aligned size 41 x 57, then cropping.
    xp = torch.zeros(1, 3, 41, 57)
    xp[0, :, :37, :50] = Preprocess()(image)
    with torch.no_grad():
        ref = torch.softmax(upsample_logits(model(xp), (37, 50)), 1)[0].numpy()
    np.testing.assert_allclose(probs, ref, atol=1e-5)


def test_predict_rejects_bad_images():
    model = build_model("deeplab-largefov", width=0.0625)
    with pytest.raises(InputError, match="uint8"):
        predict(model, np.zeros((10, 10, 3), np.float32))
    with pytest.raises(InputError, match="RGB"):
        predict(model, np.zeros((10, 10), np.uint8))


def test_predict_restores_training_mode():
    model = build_model("deeplab", num_classes=2, width=0.0625).train()
    a = predict(model, np.full((9, 9, 3), 100, np.uint8))
    b = predict(model, np.full((9, 9, 3), 100, np.uint8))
    assert model.training and np.array_equal(a, b)  # eval mode inside: dropout off, deterministic


def test_parameter_groups_partition():
    model = build_model("deeplab-largefov-msc", width=0.125)
    cls = list(model.classifier_parameters())
    rest = list(model.backbone_parameters())
    assert len(cls) == 2 * 6  # fc8 + 5 MSc score convs, weight + bias each
    assert {id(p) for p in cls}.isdisjoint({id(p) for p in rest})
    assert len(cls) + len(rest) == len(list(model.parameters()))
    assert model.classifier.weight in [p for p in cls]


def test_initialisation_fc8_gaussian():
    torch.manual_seed(0)
    model = build_model("deeplab-largefov", num_classes=21)
    w = model.classifier.weight
    assert abs(w.std().item() - 0.01) < 0.001 and torch.all(model.classifier.bias == 0)


def test_batch_norm_option():
    plain = build_model("deeplab-largefov", width=0.25)
    bn = build_model("deeplab-largefov", width=0.25, batch_norm=True)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in bn.modules())
    assert n_bn == 13 + 2  # after every VGG conv and fc6/fc7
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    bn.train()
    out = bn(torch.randn(2, 3, 33, 33))
    out.sum().backward()
    assert out.shape == (2, 21, 5, 5)


def test_width_multiplier():
    model = build_model("deeplab-largefov", width=0.25)
    assert model.backbone.conv1_1.conv.out_channels == 16 and model.head.fc6.conv.out_channels == 256
    assert n_params(model) < n_params(build_model("deeplab-largefov")) / 10


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = build_model("deeplab-msc", num_classes=3, width=0.0625, batch_norm=True)
    model.train()
    model(torch.randn(2, 3, 17, 17))  # move BN running stats off their defaults
    pre = Preprocess(mean=(1.0, 2.0, 3.0), bgr=False, scale=0.5)
    path = save_model(
        tmp_path / "m.pt",
        model,
        classes=["a", "b", "c"],
        palette=[[0, 0, 0], [255, 0, 0], [0, 9, 0]],
        preprocess=pre,
        crf={"w_bi": 4.0},
        extra={"epoch": 3},
    )
    loaded = load_model(path)
    assert loaded.arch == "deeplab-msc" and loaded.classes == ["a", "b", "c"] and loaded.crf == {"w_bi": 4.0}
    assert loaded.palette.dtype == np.uint8 and loaded.palette.tolist() == [[0, 0, 0], [255, 0, 0], [0, 9, 0]]
    assert loaded.preprocess == pre and loaded.meta["extra"] == {"epoch": 3}
    assert not loaded.model.training and loaded.model.batch_norm
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.model.state_dict()[k]), k
    image = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    np.testing.assert_allclose(predict(loaded.model, image), predict(model, image, pre), atol=1e-6)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="not found.*nope.pt"):
        load_model(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(InputError, match="bad.pt"):
        load_model(bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(InputError, match="other.pt.*not a deeplab"):
        load_model(other)


def test_save_model_checks_classes(tmp_path):
    model = build_model("deeplab", num_classes=2, width=0.0625)
    with pytest.raises(InputError, match="class names"):
        save_model(tmp_path / "m.pt", model, classes=["a"], palette=[[0, 0, 0]], preprocess=Preprocess())


def caffe_pooled_size(n: int, k: int = 3, s: int = 2, p: int = 1) -> int:
    """Caffe PoolingLayer::Reshape: ceil((n + 2p - k) / s) + 1, minus one if the last window starts in the pad."""
    out = -(-(n + 2 * p - k) // s) + 1
    if p and (out - 1) * s >= n + p:
        out -= 1
    return out


def test_pool_sizes_follow_caffe_for_every_input_size():
    bb = build_model("deeplab", width=0.0625).backbone
    for n in range(1, 70):
        x = torch.zeros(1, 4, n, n)
        want = n
        for i, s in zip(range(1, 6), (2, 2, 2, 1, 1), strict=False):
            x = getattr(bb, f"pool{i}")(x)
            want = caffe_pooled_size(want, s=s)
            assert x.shape[-1] == want, (n, i)
        assert want == output_size(n)
