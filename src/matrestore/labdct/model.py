"""The spot-cleaning network: a U-Net on a ResNet34 encoder (the paper's "dynamic U-Net").

* Encoder: :class:`matrestore.nets.resnet.ResNetEncoder` (torchvision parameter names; ImageNet weights
  only from a local file, :func:`build_model(..., encoder_weights=PATH)`), ``width`` 64 and all four
  stages for the paper, slimmer for the CPU.
* Middle: two 3×3 conv + BN + ReLU at the bottleneck.
* Decoder: per encoder level an up-block — PixelShuffle ×2 upsampling whose convolution is ICNR-initialised
  (Aitken et al. 2017: every sub-pixel starts equal, no checkerboard), BN of the skip features,
  concatenation, two 3×3 conv + ReLU.
* Last block: PixelShuffle to full resolution, the (normalised) input concatenated, a residual block of two
  3×3 convolutions, and a 1×1 convolution to one output channel (a logit).

Input: the frame, or the frame and its two neighbours in ω (``neighbours=1``: 3 channels), each
normalised as ``asinh(x / m)`` with ``m`` the median of the whole stack's pixels (never per tile).
Output: ``sigmoid(logit)`` in [0, 1], the cleaned frame (spots bright, background 0).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..nets.resnet import RESNET34_LAYERS, ResNetEncoder, load_resnet_imagenet

__all__ = ["LabdctConfig", "PRESETS", "SpotUNet", "build_model", "count_parameters", "icnr_", "normalise_frames",
           "stack_scale"]


@dataclass
class LabdctConfig:
    preset: str = "cpu"
    width: int = 16  # encoder base width (64: torchvision ResNet34)
    layers: tuple = RESNET34_LAYERS
    stages: int = 4
    decoder: tuple = (64, 48, 32, 24)  # up-block widths from the deepest level up (one per stage)
    last: int = 16  # width of the full-resolution last block
    neighbours: int = 1  # 0: the frame alone; 1: the frame and its two neighbours (3 input channels)
    loss: str = "bce_dice"  # "bce_dice" or "perceptual" (the paper's eq. 3: MSE + VGG16 features + Gram)
    patch: int = 128  # training patch side (pixels)
    receptive_radius: int | None = None

    @property
    def in_channels(self) -> int:
        return 1 + 2 * int(self.neighbours)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "LabdctConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})


PRESETS = {
    # the paper's network: full ResNet34 (ImageNet weights fit), the paper's loss, single-frame input
    "paper": LabdctConfig(preset="paper", width=64, stages=4, decoder=(512, 384, 256, 96), last=64, neighbours=0,
                          loss="perceptual", patch=256),
    # shipped: ResNet34 layout at width 16, neighbours in, BCE + Dice (see docs/model_labdct_default.md)
    "cpu": LabdctConfig(preset="cpu"),
    # tests: two stages, a receptive radius small enough for an exact tiled == whole test
    "tiny": LabdctConfig(preset="tiny", width=4, layers=(1, 1), stages=2, decoder=(8, 8), last=4, neighbours=1,
                         loss="bce_dice", patch=64),
}


def icnr_(weight: torch.Tensor, scale: int = 2, init=nn.init.kaiming_normal_) -> torch.Tensor:
    """ICNR: initialise a conv that feeds PixelShuffle(scale) so that all sub-pixels start identical."""
    out_c, in_c, kh, kw = weight.shape
    sub = torch.zeros(out_c // (scale * scale), in_c, kh, kw)
    init(sub)
    with torch.no_grad():
        weight.copy_(sub.repeat_interleave(scale * scale, dim=0))
    return weight


class PixelShuffleICNR(nn.Module):
    def __init__(self, cin: int, cout: int, scale: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout * scale * scale, 1)
        icnr_(self.conv.weight, scale)
        nn.init.zeros_(self.conv.bias)
        self.shuf = nn.PixelShuffle(scale)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.shuf(self.relu(self.conv(x)))


def _conv(cin, cout, bn=False):
    layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UpBlock(nn.Module):
    def __init__(self, up_c: int, skip_c: int, out_c: int):
        super().__init__()
        self.shuf = PixelShuffleICNR(up_c, up_c // 2)
        self.bn = nn.BatchNorm2d(skip_c)
        self.conv1 = _conv(up_c // 2 + skip_c, out_c)
        self.conv2 = _conv(out_c, out_c)

    def forward(self, x, skip):
        up = self.shuf(x)
        return self.conv2(self.conv1(torch.cat([up, self.bn(skip)], 1)))


class SpotUNet(nn.Module):
    def __init__(self, cfg: LabdctConfig):
        super().__init__()
        self.cfg = cfg
        if len(cfg.decoder) != cfg.stages:
            raise ValueError("one decoder width per encoder stage is needed")
        self.encoder = ResNetEncoder(cfg.in_channels, cfg.width, cfg.layers, cfg.stages)
        ch = self.encoder.channels  # [stem, layer1, ..., layerS]
        deep = ch[-1]
        self.middle = nn.Sequential(_conv(deep, deep * 2, bn=True), _conv(deep * 2, deep, bn=True))
        ups = []
        cin = deep
        skips = ch[:-1][::-1]  # layer(S-1) ... layer1, stem
        for skip_c, out_c in zip(skips, cfg.decoder):
            ups.append(UpBlock(cin, skip_c, out_c))
            cin = out_c
        self.ups = nn.ModuleList(ups)
        self.final_up = PixelShuffleICNR(cin, cin // 2 if cin >= 4 else cin)
        c_last_in = (cin // 2 if cin >= 4 else cin) + cfg.in_channels
        self.last_conv = _conv(c_last_in, cfg.last)
        self.res1 = _conv(cfg.last, cfg.last)
        self.res2 = nn.Conv2d(cfg.last, cfg.last, 3, padding=1)
        self.head = nn.Conv2d(cfg.last, 1, 1)
        nn.init.constant_(self.head.bias, -4.0)  # start near "no spot" (background is almost everywhere)
        self.meta: dict = {}

    @property
    def stride(self) -> int:
        return self.encoder.stride

    def forward(self, x):
        """Logits (B, 1, H, W) of normalised inputs (B, C, H, W); H, W multiples of :attr:`stride`."""
        feats = self.encoder(x)
        y = self.middle(feats[-1])
        for up, skip in zip(self.ups, feats[:-1][::-1]):
            y = up(y, skip)
        y = self.final_up(y)
        y = self.last_conv(torch.cat([y, x], 1))
        y = y + self.res2(self.res1(y))
        return self.head(F.relu(y))


def count_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def build_model(preset: str | LabdctConfig = "cpu", encoder_weights=None, **overrides) -> SpotUNet:
    """A fresh network of a preset (``tiny``, ``cpu``, ``paper``) or a :class:`LabdctConfig`; ``overrides``
    replace config fields. ``encoder_weights``: a local torchvision ResNet34 file (width 64 only)."""
    from .._validate import InputError

    if isinstance(preset, LabdctConfig):
        cfg = LabdctConfig.from_dict({**preset.to_dict(), **overrides})
    else:
        if preset not in PRESETS:
            raise InputError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}.")
        cfg = LabdctConfig.from_dict({**PRESETS[preset].to_dict(), **overrides})
    if cfg.loss not in ("bce_dice", "perceptual"):
        raise InputError(f"unknown loss {cfg.loss!r}; choose 'bce_dice' or 'perceptual'.")
    model = SpotUNet(cfg)
    if encoder_weights:
        model.meta["encoder_init"] = load_resnet_imagenet(model.encoder, encoder_weights)
    return model


# ----------------------------------------------------------------------------------------------
# normalisation: from the stack itself, whatever its intensity scale

def stack_scale(pixels: np.ndarray, exclude_zero: bool = True) -> float:
    """``m``: the median of a stack's pixels (zeros left out: beam stop, dead pixels); positive."""
    p = np.asarray(pixels, np.float64).ravel()
    if exclude_zero:
        p = p[p > 0]
    if p.size == 0:
        return 1.0
    m = float(np.median(p))
    return m if m > 0 else float(max(p.mean(), 1e-12))


def normalise_frames(frames, m: float) -> np.ndarray:
    """``asinh(x / m)`` as float32."""
    return np.arcsinh(np.asarray(frames, np.float32) / np.float32(m)).astype(np.float32)
