"""The model shipped inside the package: it loads, carries its metadata, and segments real CamVid test images."""

import numpy as np
import pytest

from deeplab.data.camvid import CAMVID_CLASSES
from deeplab.data.factory import build_dataset
from deeplab.engine.evaluate import evaluate, model_probs_fn
from deeplab.models import load_model
from deeplab.weights import default_model_path

# Stated minimum on the first 8 CamVid test images. Measured with the shipped weights (4,000 iterations; 52.46
# mIoU with the CRF on all 233 test images): mIoU 0.467 (DCNN), 0.576 (DCNN+CRF); pixel accuracy 0.815 /
# 0.858. The previous shipped model (1,000 iterations) measured 0.345 / 0.386, below these bounds.
MIN_MIOU_DCNN = 0.44
MIN_MIOU_CRF = 0.54
MIN_PIXEL_ACC = 0.79


@pytest.fixture(scope="module")
def shipped():
    return load_model(default_model_path())


def test_shipped_model_metadata(shipped):
    assert shipped.arch == "deeplab-largefov"
    assert list(shipped.classes) == CAMVID_CLASSES
    assert np.asarray(shipped.palette).shape == (11, 3)
    assert shipped.crf is not None and {"bi_w", "bi_xy_std", "bi_rgb_std"} <= set(shipped.crf)
    assert default_model_path().stat().st_size < 8 * 2**20  # a few MB inside the wheel


@pytest.mark.slow
def test_shipped_model_reaches_stated_miou(shipped, shared_data):
    from deeplab.crf import CRFParams

    test = build_dataset("camvid", shared_data / "camvid", "test")
    result = evaluate(
        test, model_probs_fn(shipped), crf=True, crf_params=CRFParams.from_dict(shipped.crf), limit=8, workers=0
    ).to_json()
    assert result["n_images"] == 8
    assert result["dcnn"]["miou"] >= MIN_MIOU_DCNN
    assert result["crf"]["miou"] >= MIN_MIOU_CRF
    assert min(result["dcnn"]["pixel_acc"], result["crf"]["pixel_acc"]) >= MIN_PIXEL_ACC
    assert result["crf"]["pixel_acc"] > result["dcnn"]["pixel_acc"]  # the searched CRF helps here
