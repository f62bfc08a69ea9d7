import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def tiny_model():
    """A tiny TTSR with a stronger-than-initial residual (so that outputs differ visibly from bicubic),
    receptive radius measured once."""
    from matrestore.sr import build_model, measure_receptive_radius

    torch.set_num_threads(min(torch.get_num_threads(), 2))
    m = build_model("tiny", seed=0)
    with torch.no_grad():
        m.main.merge_tail.conv_tail2.weight.mul_(30.0)
    measure_receptive_radius(m)
    return m.eval()


def _textures(n=3, size=96, seed=0):
    from skimage import data, transform

    rng = np.random.default_rng(seed)
    cam = data.camera().astype(np.float32) / 255
    out = []
    for i in range(n):
        y, x = rng.integers(0, 512 - 2 * size, 2)
        out.append(transform.resize(cam[y : y + 2 * size, x : x + 2 * size], (size, size), anti_aliasing=True).astype(np.float32))
    return out


@pytest.fixture(scope="session")
def ref_images():
    return _textures(3, 96, seed=1)


@pytest.fixture(scope="session")
def lr_image():
    from skimage import data

    return (data.moon()[100:150, 200:263].astype(np.float32) / 255.0)  # 50 x 63: not a multiple of any tile
