"""The attention residual denoiser of the paper (eqs. 1–10).

* feature extraction: 2 × (conv3×3 – BN – LeakyReLU 0.2) (eqs. 2–3);
* information extraction: ``n_blocks`` × [residual block ``x + σ(BN(conv(σ(BN(conv(x))))))`` (eq. 4),
  squeeze-excitation channel attention ``x ⊙ sigmoid(W2 σ(W1 squeeze(x)))`` (eqs. 5–6), dropout
  (eq. 7)];
* reconstruction: 2 × (conv – BN – LeakyReLU), conv, sigmoid (eqs. 8–10).

Two options beyond the paper, both recorded in the config:

* ``squeeze``: the SE block's pooling. ``0`` is the paper's global average pooling; ``k > 0`` averages
  over a ``k × k`` window (zero padding excluded). A local squeeze keeps the network's field of view
  finite, so tiled inference with a halo ≥ the receptive radius equals the whole-image result; with the
  global squeeze a tile's attention weights depend on the tile (inference then runs on the whole image
  when it fits, see :func:`matrestore.denoise.denoise`).
* ``shuffle``: the layers run on a ``shuffle``-times coarser grid (pixel-unshuffle in, pixel-shuffle
  out: ``shuffle²`` input and output channels per cell), ``shuffle²``-times cheaper per layer and with
  a ``shuffle``-times larger field of view; ``1`` is the paper.

The network maps an image normalised to [0, 1] (robust percentiles) to the clean image in [0, 1].
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._validate import InputError
from ..nets.blocks import conv3x3

__all__ = ["DenoiseConfig", "PRESETS", "DenoiseNet", "build_model", "count_parameters", "receptive_radius", "fuse_for_inference",
           "as_channels_last", "deepen"]


@dataclass
class DenoiseConfig:
    """Architecture of a :class:`DenoiseNet` (stored in the model file)."""

    preset: str = "cpu"
    feats: int = 32  # width of every layer
    n_blocks: int = 6  # residual + attention blocks
    reduction: int = 4  # SE bottleneck: feats // reduction
    dropout: float = 0.1  # after each block (eq. 7)
    squeeze: int = 15  # SE pooling window (grid cells); 0 = global average pooling (paper)
    shuffle: int = 2  # layers on a shuffle-times coarser grid; 1 = paper
    negative_slope: float = 0.2  # LeakyReLU

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DenoiseConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


PRESETS = {
    # the paper's layout at full resolution, global SE (width/depth are not given in the paper: our choice)
    "paper": DenoiseConfig(preset="paper", feats=64, n_blocks=8, reduction=8, dropout=0.2, squeeze=0, shuffle=1),
    # sized for CPU training and 1024² inference in about 2 s on two cores (docs/denoise.md)
    "cpu": DenoiseConfig(preset="cpu"),
    # twice the blocks of "cpu" (1024² in about 1.5 s on two cores); deepen() makes one from a trained "cpu" model
    "cpu-deep": DenoiseConfig(preset="cpu-deep", n_blocks=12),
    # for tests: a few thousand parameters
    "tiny": DenoiseConfig(preset="tiny", feats=8, n_blocks=2, reduction=2, dropout=0.0, squeeze=5, shuffle=2),
}


def _box_mean_axis(x: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    n = x.shape[dim]
    p = k // 2
    shape = list(x.shape)
    shape[dim] = 1
    c = torch.cat([x.new_zeros(shape), torch.cumsum(x, dim)], dim)
    idx = torch.arange(n, device=x.device)
    hi = (idx + p + 1).clamp(max=n)
    lo = (idx - p).clamp(min=0)
    s = c.index_select(dim, hi) - c.index_select(dim, lo)
    cnt = (hi - lo).to(x.dtype)
    view = [1] * x.dim()
    view[dim] = n
    return s / cnt.view(view)


def _box_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over a k×k window centred on each pixel, the part outside the image excluded (separable
    running sums: the same as ``avg_pool2d(count_include_pad=False)``, at a cost independent of ``k``)."""
    return _box_mean_axis(_box_mean_axis(x, k, x.dim() - 1), k, x.dim() - 2)


class ConvBNAct(nn.Sequential):
    def __init__(self, cin, cout, slope):
        super().__init__(conv3x3(cin, cout, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(slope, inplace=True))


class SEAttention(nn.Module):
    """Squeeze-excitation (eqs. 5–6): ``x ⊙ sigmoid(W2 LeakyReLU(W1 squeeze(x))))``; ``W1``, ``W2``
    dense layers over channels (1×1 convolutions). ``window=0``: global average pooling."""

    def __init__(self, feats, reduction, window, slope):
        super().__init__()
        mid = max(1, feats // max(1, reduction))
        self.w1 = nn.Conv2d(feats, mid, 1)
        self.w2 = nn.Conv2d(mid, feats, 1)
        self.window = int(window)
        self.slope = slope

    def forward(self, x):
        if self.window <= 0:
            s = self.w1(x.mean((2, 3), keepdim=True))
        else:  # W1 is linear: pooling after it is the same and pools feats/reduction channels only
            s = _box_mean(self.w1(x), self.window)
        y = torch.sigmoid(self.w2(F.leaky_relu(s, self.slope)))
        return x * y


class ResAttentionBlock(nn.Module):
    def __init__(self, cfg: DenoiseConfig):
        super().__init__()
        f, s = cfg.feats, cfg.negative_slope
        self.body = nn.Sequential(ConvBNAct(f, f, s), ConvBNAct(f, f, s))
        self.att = SEAttention(f, cfg.reduction, cfg.squeeze, s)
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()

    def forward(self, x):
        return self.drop(self.att(x + self.body(x)))


class DenoiseNet(nn.Module):
    """See the module docstring. Input and output: ``(N, 1, H, W)`` in [0, 1]; ``H`` and ``W``
    multiples of ``cfg.shuffle`` (:func:`matrestore.denoise.denoise` pads)."""

    def __init__(self, cfg: DenoiseConfig):
        super().__init__()
        if cfg.shuffle < 1 or cfg.feats < 1 or cfg.n_blocks < 0:
            raise InputError(f"invalid denoiser config {cfg}.")
        self.cfg = cfg
        r, f, s = cfg.shuffle, cfg.feats, cfg.negative_slope
        c = r * r
        self.features = nn.Sequential(ConvBNAct(c, f, s), ConvBNAct(f, f, s))
        self.blocks = nn.Sequential(*[ResAttentionBlock(cfg) for _ in range(cfg.n_blocks)])
        self.reconstruction = nn.Sequential(ConvBNAct(f, f, s), ConvBNAct(f, f, s), conv3x3(f, c))
        self.meta: dict = {}

    def forward(self, x):
        r = self.cfg.shuffle
        if r > 1:
            x = F.pixel_unshuffle(x, r)
        y = self.reconstruction(self.blocks(self.features(x)))
        if r > 1:
            y = F.pixel_shuffle(y, r)
        return torch.sigmoid(y)

    @property
    def receptive_radius(self) -> int:
        return receptive_radius(self.cfg)


def receptive_radius(cfg: DenoiseConfig) -> int:
    """How far (input px) an output pixel can see: 2 feature convs, per block 2 convs and the SE
    window's half-width, 3 reconstruction convs, on the ``shuffle`` grid; ``-1`` for a global squeeze
    (unbounded)."""
    if cfg.squeeze <= 0 and cfg.n_blocks > 0:
        return -1
    cells = 2 + cfg.n_blocks * (2 + cfg.squeeze // 2) + 3
    return cells * cfg.shuffle + cfg.shuffle - 1


def build_model(preset: str = "cpu", seed: int | None = 0, **overrides) -> DenoiseNet:
    """A fresh :class:`DenoiseNet` of ``preset`` (``"tiny"``, ``"cpu"``, ``"paper"``) with config
    fields overridden by ``overrides`` (``feats``, ``n_blocks``, ``dropout``, ``squeeze`` ...)."""
    if isinstance(preset, DenoiseConfig):
        cfg = copy.deepcopy(preset)
    else:
        if preset not in PRESETS:
            raise InputError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}.")
        cfg = copy.deepcopy(PRESETS[preset])
    bad = set(overrides) - {f.name for f in fields(DenoiseConfig)}
    if bad:
        raise InputError(f"unknown model option(s): {sorted(bad)}")
    for k, v in overrides.items():
        if v is not None:
            setattr(cfg, k, type(getattr(cfg, k))(v))
    if seed is not None:
        torch.manual_seed(int(seed))
    return DenoiseNet(cfg)


@torch.no_grad()
def deepen(model: DenoiseNet, n_blocks: int, *, gate_bias: float = 6.0, seed: int = 0) -> DenoiseNet:
    """A copy of ``model`` with ``n_blocks`` residual attention blocks, its own blocks kept in order and
    spread evenly among new ones that start as (near) identities, so training a deeper network can begin
    from a trained one (a larger capacity at no loss of what was learnt).

    A new block's last batch normalisation has ``γ = β = 0``, so its residual branch adds exactly 0
    (LeakyReLU(0) = 0, as in zero-γ residual initialisation), and its attention gate is
    ``sigmoid(gate_bias)`` everywhere (``W2 = 0``): 0.9975 for the default 6, so each new block scales its
    input by that, and the deepened network's output differs from ``model``'s by well under 1 % of the
    range at the start. Adam's step size does not depend on the gradient's scale, so the gate still
    learns. The returned model is in training mode, ``model`` is not changed; ``cfg.preset`` is kept
    and ``cfg.n_blocks`` updated (the file records both)."""
    old = list(model.blocks)
    n_old = len(old)
    if n_blocks < n_old:
        raise InputError(f"deepen: {n_blocks} blocks is fewer than the model's {n_old}.")
    cfg = copy.deepcopy(model.cfg)
    cfg.n_blocks = int(n_blocks)
    torch.manual_seed(int(seed))
    new = DenoiseNet(cfg)
    new.features.load_state_dict(model.features.state_dict())
    new.reconstruction.load_state_dict(model.reconstruction.state_dict())
    # old block i goes to position round((i + 1) * n / n_old) - 1: the last old block stays last
    slots = {round((i + 1) * n_blocks / max(1, n_old)) - 1: b for i, b in enumerate(old)}
    for j, blk in enumerate(new.blocks):
        if j in slots:
            blk.load_state_dict(slots[j].state_dict())
        else:
            bn = blk.body[1][1]
            bn.weight.zero_()
            bn.bias.zero_()
            blk.att.w2.weight.zero_()
            blk.att.w2.bias.fill_(float(gate_bias))
    new.meta = dict(getattr(model, "meta", {}))
    return new.to(next(model.parameters()).device).train()


def count_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


@torch.no_grad()
def fuse_for_inference(model: DenoiseNet) -> DenoiseNet:
    """An eval-mode copy of ``model`` with every batch normalisation folded into the convolution before
    it (``w' = w·γ/√(σ²+ε)``, ``b' = β − γ·μ/√(σ²+ε)``): the same function (to float rounding), fewer
    passes over the image. The original is not changed. The copy's weights are in channels-last memory
    order, which the convolutions of a CPU (oneDNN) or CUDA run take without reordering (1024² on two cores:
    2.5 s → 1.6 s); feed it channels-last input (:func:`as_channels_last`)."""
    fused = copy.deepcopy(model).eval()
    for m in fused.modules():
        if isinstance(m, ConvBNAct):
            conv, bn = m[0], m[1]
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=True)
            new.weight.copy_(conv.weight * scale[:, None, None, None])
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            new.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
            m[0] = new.to(conv.weight.device)
            m[1] = nn.Identity()
    fused.meta = getattr(model, "meta", {})
    return fused.to(memory_format=torch.channels_last)


def as_channels_last(x: torch.Tensor) -> torch.Tensor:
    """A 4-D batch in channels-last memory order (the order :func:`fuse_for_inference` models run fastest in)."""
    return x.contiguous(memory_format=torch.channels_last)
