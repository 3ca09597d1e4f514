import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "data"  # tiny real-data fixtures (tests/data/make_fixtures.py)


def shared_data_root() -> Path:
    """Real data beside the checkout (../shared/data), or $DEEPLAB_SHARED_DATA."""
    return Path(os.environ.get("DEEPLAB_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The full real data sets; tests that need them are skipped, with the reason, where they are absent
    (an sdist build, a user's machine). The core of the suite runs on the fixtures in tests/data."""
    root = shared_data_root()
    if not (root / "README.md").exists():
        pytest.skip(
            f"real data not found at {root} (put ../shared/data beside the checkout or set DEEPLAB_SHARED_DATA)"
        )
    return root


@pytest.fixture(scope="session")
def camvid_tiny() -> Path:
    """CamVid layout, 4 train / 2 val / 2 test frames at 120x90."""
    return FIXTURES / "camvid_tiny"


@pytest.fixture(scope="session")
def voc_tiny() -> Path:
    """VOC2012 devkit layout, 3 val / 1 train photos at 0.4x (~200x150), void bands kept."""
    return FIXTURES / "voc_tiny" / "VOC2012"


@pytest.fixture(scope="session")
def tiny_camvid_model(tmp_path_factory) -> Path:
    """A model file: an untrained width-1/16 DeepLab-LargeFOV with batch norm for the 11 CamVid classes."""
    import torch

    from deeplab.data.camvid import CAMVID_CLASSES, CAMVID_PALETTE
    from deeplab.models import build_model, save_model
    from deeplab.preprocess import Preprocess

    torch.manual_seed(0)
    model = build_model("deeplab-largefov", len(CAMVID_CLASSES), width=0.0625, batch_norm=True).eval()
    return save_model(
        tmp_path_factory.mktemp("model") / "tiny.pt",
        model,
        classes=CAMVID_CLASSES,
        palette=CAMVID_PALETTE,
        preprocess=Preprocess(),
    )
