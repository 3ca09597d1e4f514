"""dense_crf_torch: batched, both backends equal to the NumPy engine, exact gradients."""

import numpy as np
import pytest
import torch
from PIL import Image

from deeplab.crf import CRFParams, dense_crf, dense_crf_torch
from deeplab.crf.api import bilateral_features
from deeplab.crf.lattice import build_lattice, lattice_filter
from deeplab.crf.torch_lattice import TorchLattice
from deeplab.errors import InputError


@pytest.fixture(scope="module")
def batch(voc_tiny):
    """Two real 40 x 56 crops as (B, 3, H, W) uint8 and random logits (B, 4, H, W)."""
    img = np.array(Image.open(voc_tiny / "JPEGImages/2007_000033.jpg").convert("RGB"))
    crops = np.stack([img[60:100, 100:156], img[100:140, 30:86]])
    gen = torch.Generator().manual_seed(0)
    return torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous(), 2 * torch.randn(2, 4, 40, 56, generator=gen)


def test_torch_lattice_equals_numba_lattice(voc_tiny):
    img = np.array(Image.open(voc_tiny / "JPEGImages/2007_000042.jpg").convert("RGB"))[:50, :60]
    feat = bilateral_features(np.ascontiguousarray(img), 20, 8)
    values = np.random.default_rng(0).random((len(feat), 3)).astype(np.float32)
    ref = lattice_filter(build_lattice(feat), values)
    lat = TorchLattice(torch.from_numpy(feat))
    assert lat.m == build_lattice(feat).m
    out = lat.filter(torch.from_numpy(values)).numpy()
    assert np.allclose(out, ref, rtol=1e-4, atol=1e-4)
    back = lat.filter(torch.from_numpy(values), reverse=True).numpy()
    assert np.allclose(back, lattice_filter(build_lattice(feat), values, reverse=True), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend, grad", [("numba", False), ("numba", True), ("torch", False)])
def test_batched_output_equals_numpy_engine(batch, backend, grad):
    """numba without gradients runs the fused engine; with a gradient to track, the unrolled mean field."""
    images, logits = batch
    params = CRFParams(bi_xy_std=30, iterations=5)
    logits = logits.clone().requires_grad_(grad)
    q = dense_crf_torch(images, logits, params, backend=backend).detach()
    assert q.shape == logits.shape and q.dtype == torch.float32
    probs = torch.softmax(logits.detach(), 1).numpy()
    for b in range(2):
        img = images[b].permute(1, 2, 0).numpy().copy()
        exact = dense_crf(img, probs[b], params, vertex_dtype="float32", skip_tolerance=0)
        assert np.allclose(q[b].numpy(), exact, atol=1e-4)
    # channels-last images give the same answer
    assert torch.allclose(dense_crf_torch(images.permute(0, 2, 3, 1), logits, params, backend=backend).detach(), q)


def test_gradients_numba_backward_equals_autograd(batch):
    """The numba path's custom backward (transposed lattice) equals autograd through the torch lattice."""
    images, logits = batch
    weight = torch.randn(logits.shape, generator=torch.Generator().manual_seed(1))
    grads = []
    for backend in ("numba", "torch"):
        lg = logits.clone().requires_grad_(True)
        bw = torch.tensor(4.0, requires_grad=True)
        (dense_crf_torch(images, lg, bi_w=bw, iterations=3, backend=backend) * weight).sum().backward()
        grads.append((lg.grad, bw.grad))
    assert grads[0][0].abs().max() > 0
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-5)
    assert torch.allclose(grads[0][1], grads[1][1], rtol=1e-4)


def test_gradcheck_float64_torch_backend(batch):
    images, _ = batch
    small = images[:1, :, :5, :6]
    logits = torch.randn(1, 2, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    logits.requires_grad_(True)
    w = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    params = CRFParams(bi_xy_std=3, bi_rgb_std=20, pos_xy_std=1, iterations=2)
    fn = lambda lg, bw: dense_crf_torch(small, lg, params, bi_w=bw, backend="torch")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (logits, w), eps=1e-6, atol=1e-6)


def test_finite_differences_numba_backend(batch):
    """Finite differences in float32 through the numba path (custom backward) on a tiny image."""
    images, _ = batch
    small = images[:1, :, :8, :8]
    logits = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    weight = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    params = CRFParams(bi_xy_std=3, bi_rgb_std=20, pos_xy_std=1, iterations=2)
    lg = logits.clone().requires_grad_(True)
    (dense_crf_torch(small, lg, params, backend="numba") * weight).sum().backward()
    rng = np.random.default_rng(0)
    for idx in rng.integers(0, [1, 3, 8, 8], size=(6, 4)):
        idx = tuple(idx)
        f = []
        for sign in (1, -1):
            x = logits.clone()
            x[idx] += sign * 1e-2
            f.append(float((dense_crf_torch(small, x, params, backend="numba") * weight).sum()))
        assert (f[0] - f[1]) / 2e-2 == pytest.approx(float(lg.grad[idx]), abs=2e-3, rel=2e-2)


def test_bad_inputs(batch):
    images, logits = batch
    with pytest.raises(InputError, match="logits"):
        dense_crf_torch(images, logits[0])
    with pytest.raises(InputError, match="do not match"):
        dense_crf_torch(images[:, :, :20], logits)
    with pytest.raises(InputError, match="0, 1"):
        dense_crf_torch(images.float() / 255, logits)
    with pytest.raises(InputError, match="batch"):
        dense_crf_torch(images[:1], logits)
    with pytest.raises(InputError, match="non-finite"):
        dense_crf_torch(images, logits * float("nan"))
    with pytest.raises(InputError, match="backend"):
        dense_crf_torch(images, logits, backend="cuda")
