from pathlib import Path

import numpy as np
import pytest
import torch

OPTICAL = Path("/work/shared/data/optical")
NIST = OPTICAL / "nistgsat__grain_structures_steel.tif"


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def real_texture():
    """A stand-in real micrograph: smooth random texture with dark spots (uint8, 160×200)."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(5)
    t = ndi.gaussian_filter(rng.standard_normal((160, 200)), 3) * 40 + 150
    t[rng.random(t.shape) < 0.003] = 30
    return np.clip(t, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def small_structure():
    from matrestore.denoise import phase_field

    return phase_field((96, 96), n_grains=20, steps=60, seed=3)


@pytest.fixture(scope="session")
def small_pair(small_structure, real_texture):
    from matrestore.denoise import synthesize

    return synthesize(small_structure, real_texture, seed=4)


@pytest.fixture()
def tiny_model():
    from matrestore.denoise import build_model

    return build_model("tiny", seed=0).eval()


@pytest.fixture(scope="session")
def nist_path():
    """The shared NIST etched-steel micrograph (skips where the shared data is absent)."""
    if not NIST.is_file():
        pytest.skip("the shared NIST micrograph is not here")
    return NIST
