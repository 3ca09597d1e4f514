"""The portable build (plain numba loops, DEEPLAB_CRF_PORTABLE=1) gives the SIMD build's results."""

import os
import subprocess
import sys

import numpy as np
import pytest

from crops import voc_crop
from deeplab.crf import CRFParams, dense_crf
from deeplab.crf.kernels import PORTABLE

CODE = """
import sys, numpy as np
from deeplab.crf import dense_crf, CRFParams
from deeplab.crf.kernels import PORTABLE
assert PORTABLE
z = np.load(sys.argv[1])
q = dense_crf(z["img"], z["probs"], CRFParams(bi_xy_std=20, iterations=5), threads=int(sys.argv[2]))
np.save(sys.argv[3], q)
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_portable_build_matches_the_simd_build(threads, tmp_path):
    if PORTABLE:
        pytest.skip("this process already runs the portable build")
    img, gt = voc_crop(0)
    img, gt = np.ascontiguousarray(img[:24, :32]), gt[:24, :32]
    rng = np.random.default_rng(0)
    probs = rng.random((11, 24, 32)).astype(np.float32) + 3 * (np.arange(11)[:, None, None] == gt % 11)
    probs /= probs.sum(0)
    np.savez(tmp_path / "in.npz", img=img, probs=probs)
    env = dict(os.environ)
    env["DEEPLAB_CRF_PORTABLE"] = "1"
    run = subprocess.run(
        [sys.executable, "-c", CODE, str(tmp_path / "in.npz"), str(threads), str(tmp_path / "q.npy")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    ref = dense_crf(img, probs, CRFParams(bi_xy_std=20, iterations=5), threads=threads)
    np.testing.assert_allclose(np.load(tmp_path / "q.npy"), ref, atol=2e-5)
