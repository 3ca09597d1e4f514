"""The Python API in the ecosystem's shape: load_model, builders and registry, batch inference on tensors and
arrays of any size, torch.hub, top-level exports, and a light ``import deeplab`` / ``deeplab --help``."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import deeplab
from deeplab.crf import CRFParams, dense_crf
from deeplab.errors import InputError
from deeplab.models import build_model, get_model, list_builders, load_model, predict, save_model
from deeplab.preprocess import Preprocess

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.jpg"))


@pytest.fixture(scope="module")
def shipped():
    return load_model("default")


@pytest.fixture(scope="module")
def frames():
    return [np.array(Image.open(p).convert("RGB")) for p in EXAMPLES[:2]]


def test_load_model_default_and_device(shipped):
    assert shipped.model.classes[0] == "Sky" and shipped.model.crf == shipped.crf
    on_cpu = load_model("default", device="cpu")
    assert next(on_cpu.model.parameters()).device.type == "cpu"
    with pytest.raises(InputError, match="not found"):
        load_model("no/such/model.pt")


def test_builders_registry_and_weights():
    assert list_builders() == [
        "deeplab_vgg16",
        "deeplab_vgg16_msc",
        "deeplab_4x4",
        "deeplab_4x4_msc",
        "deeplab_7x7",
        "deeplab_7x7_msc",
        "deeplab_largefov",
        "deeplab_largefov_msc",
    ]
    m = deeplab.deeplab_largefov(num_classes=5, width=0.125)
    assert m.arch == "deeplab-largefov" and m.num_classes == 5 and m.preprocess == Preprocess()
    assert get_model("deeplab-4x4", num_classes=3, width=0.0625).arch == "deeplab-4x4"
    assert get_model("deeplab_vgg16_msc", num_classes=3, width=0.0625).msc
    camvid = deeplab.deeplab_largefov(weights="camvid")
    assert camvid.num_classes == 11 and camvid.width == 0.25 and camvid.batch_norm
    with pytest.raises(InputError, match="num_classes=21"):
        deeplab.deeplab_largefov(num_classes=21, weights="camvid")
    with pytest.raises(InputError, match="arch="):
        get_model("deeplab-7x7", weights="camvid")
    with pytest.raises(InputError, match="unknown model"):
        get_model("fcn")


def test_segment_takes_tensors_arrays_and_lists_of_any_size(shipped, frames):
    a, b = frames
    single = deeplab.segment(a, shipped)  # one (H, W, 3) array -> one (H, W) label map
    assert single.shape == a.shape[:2] and single.dtype == torch.int64
    np.testing.assert_array_equal(single.numpy(), predict(shipped.model, a).argmax(0))

    batch = torch.from_numpy(np.stack([a, b])).permute(0, 3, 1, 2)  # (B, 3, H, W) uint8
    labels = shipped.model.predict(batch)
    assert labels.shape == (2, *a.shape[:2])
    np.testing.assert_array_equal(labels[0].numpy(), single.numpy())
    as_float = deeplab.segment(batch.float() / 255, shipped, output="probs")  # torchvision's [0, 1] floats
    assert as_float.shape == (2, 11, *a.shape[:2])
    torch.testing.assert_close(as_float.sum(1), torch.ones(2, *a.shape[:2]))

    crop = np.ascontiguousarray(a[:101, :77])
    mixed = deeplab.segment([a, crop, b], shipped, batch_size=2)  # different sizes: a list back
    assert [m.shape for m in mixed] == [a.shape[:2], crop.shape[:2], b.shape[:2]]
    np.testing.assert_array_equal(mixed[1].numpy(), predict(shipped.model, crop).argmax(0))


def test_segment_with_the_crf_uses_the_models_parameters(shipped, frames):
    a = frames[0]
    refined = deeplab.segment(a, shipped, crf=True, output="probs")
    ref = dense_crf(a, predict(shipped.model, a), CRFParams.from_dict(shipped.crf), threads=1)
    np.testing.assert_allclose(refined.numpy(), ref, atol=1e-5)
    other = deeplab.segment(a, shipped, crf=True, crf_params={"bi_w": 8})
    assert other.shape == a.shape[:2]


def test_segment_rejects_bad_images(shipped):
    with pytest.raises(InputError, match="float tensors"):
        deeplab.segment(torch.full((3, 20, 20), 255.0), shipped)
    with pytest.raises(InputError, match="uint8"):
        deeplab.segment(np.zeros((20, 20, 3), np.float64), shipped)
    with pytest.raises(InputError, match="output"):
        deeplab.segment(np.zeros((20, 20, 3), np.uint8), shipped, output="logits")


@pytest.mark.slow
def test_torch_hub_loads_offline():
    model = torch.hub.load(str(REPO), "deeplab_largefov_camvid", source="local")
    assert model.num_classes == 11 and not model.training
    fresh = torch.hub.load(str(REPO), "deeplab_largefov", source="local", num_classes=4, width=0.0625)
    assert fresh.num_classes == 4


def test_top_level_exports_and_typed_marker():
    for name in deeplab.__all__:
        assert getattr(deeplab, name) is not None
    assert (Path(deeplab.__file__).parent / "py.typed").is_file()


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["segment", "--help"],
        ["crf", "--help"],
        ["train", "--help"],
        ["evaluate", "--help"],
        ["convert", "--help"],
        ["export", "--help"],
    ],
)
@pytest.mark.slow
def test_help_imports_neither_torch_nor_numba(argv):
    code = (
        f"import sys\nfrom deeplab.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'numba', 'matplotlib', 'scipy') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "HEAVY []" in out, out


@pytest.mark.slow
def test_import_changes_nothing_global_in_the_host_process():
    """Importing the library (and running the CRF and a plot) leaves numba's threading layer and matplotlib's
    backend as the host process set them."""
    code = """
import matplotlib
matplotlib.use("svg")
import numba, numpy as np
layer = numba.config.THREADING_LAYER
import deeplab, deeplab.crf, deeplab.engine.plots, deeplab.engine.trimap
from deeplab.crf import dense_crf
img = np.zeros((20, 20, 3), np.uint8); p = np.full((2, 20, 20), 0.5, np.float32)
dense_crf(img, p, threads=2)
deeplab.engine.plots.plot_curves([{"iteration": 1, "loss": 1.0, "lr": 0.1}], "%s")
print("STATE", matplotlib.get_backend(), numba.config.THREADING_LAYER == layer)
"""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", code % (Path(tmp) / "c.png")], capture_output=True, text=True, timeout=300
        )
    assert "STATE svg True" in out.stdout, out.stderr[-2000:]


def test_evaluate_accepts_a_runs_checkpoint(camvid_tiny, tmp_path):
    from deeplab.cli import main
    from deeplab.data.camvid import CAMVID_CLASSES, CAMVID_PALETTE
    from deeplab.engine.sampler import Position
    from deeplab.engine.state import save_state

    torch.manual_seed(0)
    model = build_model("deeplab-largefov", 11, width=0.0625)
    meta = {"classes": CAMVID_CLASSES, "palette": CAMVID_PALETTE.tolist(), "preprocess": Preprocess().to_dict()}
    config = {"model": {"arch": "deeplab-largefov", "width": 0.0625, "batch_norm": False, "init": None}}
    ckpt = save_state(
        tmp_path / "checkpoint.pt",
        model_state=model.state_dict(),
        optimizer_state={},
        iteration=7,
        position=Position(),
        config=config,
        meta=meta,
    )
    reference = save_model(
        tmp_path / "m.pt", model, classes=CAMVID_CLASSES, palette=CAMVID_PALETTE, preprocess=Preprocess()
    )
    confusions = []
    for name, path in (("ev", ckpt), ("ref", reference)):
        argv = f"evaluate --model {path} --dataset camvid --data {camvid_tiny} --split test --no-progress --workers 0"
        assert main([*argv.split(), "-o", str(tmp_path / name)]) == 0
        confusions.append(json.loads((tmp_path / name / "metrics.json").read_text())["confusion"])
    assert confusions[0] == confusions[1]


def test_the_gpu_crf_path_equals_the_numpy_engine(frames):
    """segment's CRF on a GPU runs the pure-torch lattice; on CPU tensors it must give the NumPy engine's Q
    (float32 vertices; the engine's default float16 storage within its documented 0.02)."""
    from deeplab.crf import dense_crf
    from deeplab.models.inference import refine_with_crf

    image = np.ascontiguousarray(frames[0][:90, :120])
    rng = np.random.default_rng(0)
    probs = torch.from_numpy(rng.random((2, 5, 90, 120)).astype(np.float32))
    probs /= probs.sum(1, keepdim=True)
    params = CRFParams(bi_xy_std=30, iterations=4)
    numpy_q = refine_with_crf([image, image], probs, params, engine="numpy")
    torch_q = refine_with_crf([image, image], probs, params, engine="torch")
    exact = [dense_crf(image, p, params, vertex_dtype="float32", skip_tolerance=0) for p in probs.numpy()]
    exact = torch.from_numpy(np.stack(exact))
    torch.testing.assert_close(torch_q, exact, atol=2e-4, rtol=0)
    torch.testing.assert_close(numpy_q, exact, atol=2e-2, rtol=0)
