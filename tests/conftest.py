import os
from pathlib import Path

import numpy as np
import pytest

# Real test images (never copied into the project): $MATRESTORE_SHARED_DATA, else ../shared/data
# beside the repository, else the workplace's /work/shared/data.
_CANDIDATES = [os.environ.get("MATRESTORE_SHARED_DATA"), Path(__file__).resolve().parents[2] / "shared" / "data",
               "/work/shared/data"]
SHARED_DATA = next((Path(c) for c in _CANDIDATES if c and Path(c).is_dir()), Path(_CANDIDATES[1]))


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


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path, monkeypatch):
    """Widgets remember their settings; tests use a throw-away INI file, never the user's QSettings."""
    monkeypatch.setenv("MATRESTORE_SETTINGS", str(tmp_path / "matrestore_settings.ini"))
