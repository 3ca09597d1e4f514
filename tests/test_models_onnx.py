"""ONNX export (onnxruntime vs torch), the export CLI and predict()'s onnxruntime backend (export cached on disk)."""

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


@pytest.mark.slow
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


@pytest.mark.slow
def test_export_cli(msc_model, tmp_path, capsys):
    ckpt = save_model(
        tmp_path / "m.pt", msc_model, classes=list("abcd"), palette=[[0, 0, 0]] * 4, preprocess=Preprocess()
    )
    assert cli_main(["export", str(ckpt), "-o", str(tmp_path / "m.onnx"), "--size", "49"]) == 0
    assert "max |diff|" in capsys.readouterr().out and (tmp_path / "m.onnx").stat().st_size > 10_000
    assert cli_main(["export", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "x.onnx")]) == 2


@pytest.mark.slow
def test_predict_backends_agree_and_the_export_is_cached_on_disk(msc_model, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPLAB_CACHE_DIR", str(tmp_path))
    image = np.random.default_rng(0).integers(0, 256, (45, 30, 3), dtype=np.uint8)
    eager = predict(msc_model, image, backend="eager")
    np.testing.assert_allclose(predict(msc_model, image), eager, atol=1e-5)  # default: channels_last
    ort = predict(msc_model, image, backend="onnxruntime")
    np.testing.assert_allclose(ort, eager, atol=1e-5)
    exported = list((tmp_path / "onnx").glob("*.onnx"))
    assert len(exported) == 1 and predict_mod.weights_key(msc_model) in exported[0].name

    predict_mod._SESSIONS.clear()  # as in a new process: the file is reused, nothing is exported again
    monkeypatch.setattr("deeplab.models.onnx_export.export_onnx", lambda *a, **k: pytest.fail("exported again"))
    np.testing.assert_array_equal(predict(msc_model, image, backend="onnxruntime"), ort)
    monkeypatch.undo()
    monkeypatch.setenv("DEEPLAB_CACHE_DIR", str(tmp_path))

    with torch.no_grad():
        msc_model.classifier.bias[0] += 3.0  # new weights: a new key, a new export
    changed = predict(msc_model, image, backend="onnxruntime")
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 2
    np.testing.assert_allclose(changed, predict(msc_model, image, backend="eager"), atol=1e-5)
    assert changed[0].mean() > eager[0].mean()


def test_predict_falls_back_to_channels_last(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPLAB_CACHE_DIR", str(tmp_path))
    model = build_model("deeplab-largefov", num_classes=2, width=0.0625)

    def broken(*args, **kwargs):
        raise RuntimeError("no exporter here")

    monkeypatch.setattr("deeplab.models.onnx_export.export_onnx", broken)
    image = np.full((20, 20, 3), 90, np.uint8)
    with pytest.warns(RuntimeWarning, match="no exporter here"):
        out = predict(model, image, backend="onnxruntime")
    np.testing.assert_array_equal(out, predict(model, image, backend="channels_last"))
