import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if "MATRESTORE_SHARED_DATA" in os.environ:
    SHARED_DATA = Path(os.environ["MATRESTORE_SHARED_DATA"])


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (set MATRESTORE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def textured():
    """A 96×96 float image in [0, 1] with edges of several orientations and some texture."""
    from skimage import data, transform

    img = data.camera().astype(np.float64) / 255.0
    return transform.resize(img[100:292, 150:342], (96, 96), anti_aliasing=True)
