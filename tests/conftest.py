import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """Real data beside the checkout (../shared/data), or $DEEPLAB_SHARED_DATA."""
    return Path(os.environ.get("DEEPLAB_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_root()
    if not (root / "README.md").exists():
        pytest.fail(f"real data not found at {root}: put ../shared/data beside the checkout or set DEEPLAB_SHARED_DATA")
    return root
