"""Synthetic stacks for the LabDCT tests."""

import numpy as np


def smooth_background(shape=(96, 96), seed=0):
    """A smooth positive field in [0.3, 1] (like a normalised I_BG)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] / max(shape)
    f = 0.7 + 0.2 * np.sin(2 * np.pi * (xx * rng.uniform(0.5, 1.5) + yy * rng.uniform(0.5, 1.5))) + 0.1 * xx
    return (f / f.max()).astype(np.float32)


def moving_spot_stack(n=12, shape=(96, 96), level=100.0, amp=80.0, seed=0, noise=True, jitter=0.0):
    """A stack with a fixed smooth background and bright 3x3 spots that move from frame to frame;
    returns (stack, truth masks, background)."""
    rng = np.random.default_rng(seed)
    bg = smooth_background(shape, seed)
    frames, truth = [], []
    for k in range(n):
        f = level * bg * (1 + jitter * rng.uniform(-1, 1))
        m = np.zeros(shape, bool)
        for j in range(6):
            r = 10 + (13 * j + 7 * k * (j + 1)) % (shape[0] - 20)
            c = 10 + (29 * j + 11 * k) % (shape[1] - 20)
            f[r - 1 : r + 2, c - 1 : c + 2] += amp
            m[r - 1 : r + 2, c - 1 : c + 2] = True
        if noise:
            f = f + rng.normal(0, 2.0, shape)
        frames.append(f.astype(np.float32))
        truth.append(m)
    return np.stack(frames), np.stack(truth), bg
