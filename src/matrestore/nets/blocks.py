"""Small building blocks shared by the networks of every task."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..baselines import cubic_kernel


def conv3x3(cin: int, cout: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=bias)


def conv1x1(cin: int, cout: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, bias=bias)


class ResBlock(nn.Module):
    """``x + res_scale * conv(relu(conv(x)))`` (EDSR/TTSR residual block, no normalisation)."""

    def __init__(self, n_feats: int, res_scale: float = 1.0):
        super().__init__()
        self.conv1 = conv3x3(n_feats, n_feats)
        self.conv2 = conv3x3(n_feats, n_feats)
        self.res_scale = res_scale

    def forward(self, x):
        return x + self.res_scale * self.conv2(F.relu_(self.conv1(x)))


def bicubic_phase_weights(scale: int) -> tuple[np.ndarray, int]:
    """``(weights[scale, 2*pad+1], pad)``: output ``i*s + r`` = sum_k weights[r, k] * in[i + k - pad].

    Same kernel (Keys, a = -0.5), half-pixel grid and normalisation as :func:`matrestore.baselines.upsample`.
    """
    support = 2
    ks = np.arange(-support + 1, support + 1)
    rows = []
    offsets = []
    for r in range(scale):
        frac = (r + 0.5) / scale - 0.5
        base = int(np.floor(frac))
        w = cubic_kernel((frac - base) - ks)
        rows.append(w / w.sum())
        offsets.append(base + ks)
    pad = int(max(np.abs(np.concatenate(offsets))))
    out = np.zeros((scale, 2 * pad + 1))
    for r in range(scale):
        for off, w in zip(offsets[r], rows[r]):
            out[r, off + pad] += w
    return out, pad


class BicubicUpsample(nn.Module):
    """Integer-scale bicubic upsampling identical to ``baselines.upsample(..., "bicubic")`` (float path):
    Keys' kernel with a = -0.5, half-pixel grid, replicated edges. Channel-wise, any batch size.

    Unlike ``F.interpolate(mode="bicubic")`` (a = -0.75) a network's residual added to this output is a
    residual over exactly the bicubic baseline the evaluation compares with. Written as shifted weighted
    sums per output phase, which is also faster than ``F.interpolate`` on CPUs (forward and backward).
    """

    def __init__(self, scale: int):
        super().__init__()
        self.scale = int(scale)
        w, pad = bicubic_phase_weights(self.scale)
        self.pad = pad
        self.taps = [[(k, float(w[r, k])) for k in range(w.shape[1]) if w[r, k] != 0] for r in range(self.scale)]

    def _along(self, x, dim):
        n, p, s = x.shape[dim], self.pad, self.scale
        xp = torch.cat([x.narrow(dim, 0, 1)] * p + [x] + [x.narrow(dim, n - 1, 1)] * p, dim)
        outs = []
        for r in range(s):
            acc = None
            for k, wk in self.taps[r]:
                term = xp.narrow(dim, k, n) * wk
                acc = term if acc is None else acc + term
            outs.append(acc)
        shape = list(x.shape)
        shape[dim] = n * s
        return torch.stack(outs, dim + 1).reshape(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1:
            return x
        return self._along(self._along(x, x.dim() - 2), x.dim() - 1)
