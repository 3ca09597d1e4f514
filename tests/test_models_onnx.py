"""ONNX export (onnxruntime vs torch), the export CLI and predict()'s cached onnxruntime path."""

import importlib

import numpy as np
import pytest
import torch

from deeplab.cli import main as cli_main
from deeplab.models import build_model, predict, save_model
from deeplab.models.onnx_export import OnnxRunner, export_onnx
from deeplab.preprocess import Preprocess

pytest.importorskip("onnxruntime")
predict_mod = importlib.import_module("deeplab.models.predict")  # the module, not the function of that name


@pytest.fixture(scope="module")
def msc_model():
    torch.manual_seed(0)
    return build_model("deeplab-largefov-msc", num_classes=4, width=0.0625).eval()


def test_onnxruntime_matches_torch_with_dynamic_batch_and_size(msc_model, tmp_path):
    runner = OnnxRunner(export_onnx(msc_model, tmp_path / "m.onnx", example_size=65))
    gen = torch.Generator().manual_seed(1)
    for shape in [(1, 3, 65, 65), (2, 3, 41, 97), (1, 3, 161, 33)]:
        x = torch.randn(*shape, generator=gen) * 60
        with torch.no_grad():
            ref = msc_model(x)
        out = runner(x)
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


def test_export_cli(msc_model, tmp_path, capsys):
    ckpt = save_model(tmp_path / "m.pt", msc_model, classes=list("abcd"), palette=[[0, 0, 0]] * 4,
                      preprocess=Preprocess())
    assert cli_main(["export", str(ckpt), "-o", str(tmp_path / "m.onnx"), "--size", "49"]) == 0
    assert "max |diff|" in capsys.readouterr().out and (tmp_path / "m.onnx").stat().st_size > 10_000
    assert cli_main(["export", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "x.onnx")]) == 2


def test_predict_backends_agree_and_cache_follows_weights(msc_model, monkeypatch):
    monkeypatch.setattr(predict_mod, "AUTO_EXPORT_AFTER_S", 1e-9)
    image = np.random.default_rng(0).integers(0, 256, (45, 30, 3), dtype=np.uint8)
    eager = predict(msc_model, image, backend="eager")
    first = predict(msc_model, image)  # auto: eager until the eager time spent reaches the export cost
    entry = predict_mod._ORT_CACHE[msc_model]
    assert entry.runner is None and entry.eager_seconds > 0 and np.array_equal(first, eager)
    second = predict(msc_model, image)  # ... then onnxruntime
    assert entry.runner is not None
    np.testing.assert_allclose(second, eager, atol=1e-5)
    with torch.no_grad():
        msc_model.classifier.bias[0] += 3.0  # in-place update (like an optimizer step) invalidates the session
    changed = predict(msc_model, image, backend="onnxruntime")
    assert predict_mod._ORT_CACHE[msc_model] is not entry
    np.testing.assert_allclose(changed, predict(msc_model, image, backend="eager"), atol=1e-5)
    assert changed[0].mean() > eager[0].mean()


def test_predict_falls_back_to_eager(monkeypatch):
    model = build_model("deeplab-largefov", num_classes=2, width=0.0625)

    def broken(_):
        raise RuntimeError("no exporter here")

    monkeypatch.setattr(predict_mod, "_ort_runner", broken)
    image = np.full((20, 20, 3), 90, np.uint8)
    with pytest.warns(RuntimeWarning, match="no exporter here"):
        out = predict(model, image, backend="onnxruntime")
    np.testing.assert_array_equal(out, predict(model, image, backend="eager"))
