"""Texture Transformer network for super-resolution (TTSR, Yang et al. 2020), greyscale, scale 4.

Parts (names follow the official implementation):

* ``lte`` — learnable texture extractor: the first VGG19 layers up to relu1_1 / relu2_1 / relu3_1
  (64, 128, 256 channels at 1, 1/2, 1/4 of the HR resolution in the ``paper`` preset; slimmer widths
  with the same structure in the CPU presets). Parameter names are torchvision's
  (``lte.features.0.weight`` ...), so ImageNet VGG19 weights load into the ``paper`` preset.
* search & transfer — 3×3 patches of LTE(LR↑) relu3_1 are queries, 3×3 patches of LTE(Ref↓↑) the
  keys; both are L2-normalised and compared by (batched) matrix products. Hard attention (argmax per
  query) gathers the HR reference textures LTE(Ref) at the three scales; soft attention ``S`` (the
  maximum relevance) weights their fusion. The search is streamed over reference positions in slabs
  with a running max/argmax so that memory stays bounded.
* ``main`` — shallow feature extraction, residual blocks and texture fusion at ×1, ×2 and ×4 with
  cross-scale feature integration (CSFI) and a merge tail.
* Output: ``bicubic(LR) + residual`` (``residual=True``, default): the network predicts what bicubic
  interpolation misses. The bicubic is :class:`matrestore.nets.BicubicUpsample`, identical to
  :func:`matrestore.baselines.upsample`, so a zero residual *is* the bicubic baseline (DESIGN.md: this is
  what makes a reference-based model beat bicubic at a CPU budget).

Images enter the network normalised to about [-1, 1] (see :func:`normalise`).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .._validate import InputError
from ..nets.blocks import BicubicUpsample, ResBlock, conv1x1, conv3x3
from ..nets.vgg import VGG19Features, imagenet_normalisation

__all__ = ["SRConfig", "PRESETS", "TTSR", "LTE", "Discriminator", "build_model", "deepen", "count_parameters", "normalise", "denormalise", "norm_stats"]


@dataclass
class SRConfig:
    """Architecture and inference defaults of a TTSR model (stored in the model file)."""

    preset: str = "cpu"
    scale: int = 4
    feats: tuple = (32, 16, 12)  # main-network widths at ×1, ×2, ×4
    res_blocks: tuple = (4, 4, 2, 1)  # SFE, ×1, ×2 (CSFI2), ×4 (CSFI3); official: 16, 16, 8, 4
    lte_channels: tuple = (16, 32, 32)  # relu1_1, relu2_1, relu3_1 widths; VGG19: 64, 128, 256
    lte_in_channels: int = 1  # 3: grey replicated to RGB (ImageNet VGG19 weights as they are)
    residual: bool = True  # output = bicubic(LR) + network
    top_k: int = 2  # references searched per image (fast mode) or tile (paper mode)
    ref_crop: int = 128  # reference crops (HR px, multiple of scale)
    disc_feats: int = 32  # discriminator width (training only)
    receptive_radius: int | None = None  # measured dependency radius in LR px (see measure_receptive_radius)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "SRConfig":
        names = {f.name for f in fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
        return cls(**kw)


PRESETS = {
    # the official TTSR network (7.3 M parameters with its LTE); ImageNet VGG19 weights fit its LTE
    "paper": SRConfig(
        preset="paper", feats=(64, 64, 64), res_blocks=(16, 16, 8, 4), lte_channels=(64, 128, 256),
        lte_in_channels=3, top_k=1, ref_crop=300, disc_feats=32, receptive_radius=99,
    ),
    # sized for CPU training and inference (see docs/sr_engine.md for the measured speed)
    "cpu": SRConfig(preset="cpu", receptive_radius=33),
    # for tests: a few thousand parameters, receptive radius small enough for exact tiling tests
    "tiny": SRConfig(
        preset="tiny", feats=(8, 8, 4), res_blocks=(1, 1, 1, 1), lte_channels=(4, 8, 8), lte_in_channels=1,
        top_k=2, ref_crop=32, disc_feats=4, receptive_radius=19,
    ),
}


# receptive_radius: measured with matrestore.sr.enhance.measure_receptive_radius (depends on the
# architecture only); enhance's fast mode uses it + 2 as the default halo.

# ----------------------------------------------------------------------------------------------
# normalisation (whole image, never per tile)

NORM = {"kind": "percentile", "low": 0.5, "high": 99.5, "range": [-1.0, 1.0]}


def norm_stats(image: np.ndarray, norm: dict = NORM) -> tuple[float, float]:
    """``(lo, hi)``: the ``low``/``high`` percentiles of an image (``hi > lo`` guaranteed)."""
    from ..metrics import percentile_range

    return percentile_range(image, norm["low"], norm["high"])


def normalise(image, stats) -> np.ndarray:
    """Map ``stats`` = (lo, hi) to [-1, 1] (values outside are kept, not clipped)."""
    lo, hi = stats
    return ((np.asarray(image, dtype=np.float32) - lo) * (2.0 / (hi - lo)) - 1.0).astype(np.float32)


def denormalise(x, stats) -> np.ndarray:
    lo, hi = stats
    return ((np.asarray(x, dtype=np.float32) + 1.0) * ((hi - lo) / 2.0) + lo).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# network parts


def _up(x, factor):
    """Feature upsampling: bilinear, half-pixel grid (translation-equivariant, so tiling stays exact).
    The official TTSR uses bicubic here; bilinear is 4-7 times cheaper on CPUs, forward and backward.
    The image itself is upsampled with the exact bicubic of the baselines (``TTSR.upsample``)."""
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


class LTE(VGG19Features):
    """Learnable texture extractor: VGG19 up to relu3_1 on inputs in [-1, 1]; returns (relu1_1, relu2_1, relu3_1)."""

    TAPS = ("relu1_1", "relu2_1", "relu3_1")

    def __init__(self, channels=(64, 128, 256), in_channels: int = 3):
        super().__init__("relu3_1", in_channels=in_channels, widths=tuple(channels))
        mean, std = imagenet_normalisation(in_channels)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def _prep(self, x):
        if self.in_channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return ((x + 1.0) * 0.5 - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x, levels=(1, 2, 3)):
        taps = [self.TAPS[l - 1] for l in levels]
        return super().forward(self._prep(x), taps)


class SFE(nn.Module):
    def __init__(self, n, nblocks):
        super().__init__()
        self.conv_head = conv3x3(1, n)
        self.RBs = nn.ModuleList([ResBlock(n) for _ in range(nblocks)])
        self.conv_tail = conv3x3(n, n)

    def forward(self, x):
        x = F.relu_(self.conv_head(x))
        x1 = x
        for rb in self.RBs:
            x = rb(x)
        return self.conv_tail(x) + x1


class CSFI2(nn.Module):
    """Cross-scale feature integration of the ×1 and ×2 streams (1×1 convs applied before upsampling:
    the same result as after it, since both are linear, at a quarter of the cost)."""

    def __init__(self, n1, n2):
        super().__init__()
        self.conv12 = conv1x1(n1, n2)
        self.conv21 = conv3x3(n2, n1, stride=2)
        self.conv_merge1 = conv3x3(2 * n1, n1)
        self.conv_merge2 = conv3x3(2 * n2, n2)

    def forward(self, x1, x2):
        x12 = F.relu_(_up(self.conv12(x1), 2))
        x21 = F.relu_(self.conv21(x2))
        x1 = F.relu_(self.conv_merge1(torch.cat((x1, x21), 1)))
        x2 = F.relu_(self.conv_merge2(torch.cat((x2, x12), 1)))
        return x1, x2


class CSFI3(nn.Module):
    def __init__(self, n1, n2, n4):
        super().__init__()
        self.conv12 = conv1x1(n1, n2)
        self.conv13 = conv1x1(n1, n4)
        self.conv21 = conv3x3(n2, n1, stride=2)
        self.conv23 = conv1x1(n2, n4)
        self.conv31_1 = conv3x3(n4, n4, stride=2)
        self.conv31_2 = conv3x3(n4, n1, stride=2)
        self.conv32 = conv3x3(n4, n2, stride=2)
        self.conv_merge1 = conv3x3(3 * n1, n1)
        self.conv_merge2 = conv3x3(3 * n2, n2)
        self.conv_merge3 = conv3x3(3 * n4, n4)

    def forward(self, x1, x2, x3):
        x12 = F.relu_(_up(self.conv12(x1), 2))
        x13 = F.relu_(_up(self.conv13(x1), 4))
        x21 = F.relu_(self.conv21(x2))
        x23 = F.relu_(_up(self.conv23(x2), 2))
        x31 = F.relu_(self.conv31_2(F.relu_(self.conv31_1(x3))))
        x32 = F.relu_(self.conv32(x3))
        x1 = F.relu_(self.conv_merge1(torch.cat((x1, x21, x31), 1)))
        x2 = F.relu_(self.conv_merge2(torch.cat((x2, x12, x32), 1)))
        x3 = F.relu_(self.conv_merge3(torch.cat((x3, x13, x23), 1)))
        return x1, x2, x3


class MergeTail(nn.Module):
    def __init__(self, n1, n2, n4):
        super().__init__()
        self.conv13 = conv1x1(n1, n4)
        self.conv23 = conv1x1(n2, n4)
        self.conv_merge = conv3x3(3 * n4, n4)
        self.conv_tail1 = conv3x3(n4, max(n4 // 2, 1))
        self.conv_tail2 = conv1x1(max(n4 // 2, 1), 1)

    def forward(self, x1, x2, x3):
        x13 = F.relu_(_up(self.conv13(x1), 4))
        x23 = F.relu_(_up(self.conv23(x2), 2))
        x = F.relu_(self.conv_merge(torch.cat((x3, x13, x23), 1)))
        return self.conv_tail2(self.conv_tail1(x))


class MainNet(nn.Module):
    def __init__(self, cfg: SRConfig):
        super().__init__()
        n1, n2, n4 = cfg.feats
        c1, c2, c3 = cfg.lte_channels
        nb = cfg.res_blocks
        self.SFE = SFE(n1, nb[0])
        self.conv11_head = conv3x3(c3 + n1, n1)
        self.RB11 = nn.ModuleList([ResBlock(n1) for _ in range(nb[1])])
        self.conv11_tail = conv3x3(n1, n1)
        self.conv12 = conv3x3(n1, n2 * 4)
        self.ps12 = nn.PixelShuffle(2)
        self.conv22_head = conv3x3(c2 + n2, n2)
        self.ex12 = CSFI2(n1, n2)
        self.RB21 = nn.ModuleList([ResBlock(n1) for _ in range(nb[2])])
        self.RB22 = nn.ModuleList([ResBlock(n2) for _ in range(nb[2])])
        self.conv21_tail = conv3x3(n1, n1)
        self.conv22_tail = conv3x3(n2, n2)
        self.conv23 = conv3x3(n2, n4 * 4)
        self.ps23 = nn.PixelShuffle(2)
        self.conv33_head = conv3x3(c1 + n4, n4)
        self.ex123 = CSFI3(n1, n2, n4)
        self.RB31 = nn.ModuleList([ResBlock(n1) for _ in range(nb[3])])
        self.RB32 = nn.ModuleList([ResBlock(n2) for _ in range(nb[3])])
        self.RB33 = nn.ModuleList([ResBlock(n4) for _ in range(nb[3])])
        self.conv31_tail = conv3x3(n1, n1)
        self.conv32_tail = conv3x3(n2, n2)
        self.conv33_tail = conv3x3(n4, n4)
        self.merge_tail = MergeTail(n1, n2, n4)

    def forward(self, lr, S, T3, T2, T1):
        x = self.SFE(lr)
        # ×1: fuse relu3_1 textures, weighted by the soft attention S
        x11 = x
        x11 = x11 + self.conv11_head(torch.cat((x11, T3), 1)) * S
        x11_res = x11
        for rb in self.RB11:
            x11_res = rb(x11_res)
        x11 = x11 + self.conv11_tail(x11_res)
        # ×2
        x21, x21_res = x11, x11
        x22 = F.relu_(self.ps12(self.conv12(x11)))
        x22 = x22 + self.conv22_head(torch.cat((x22, T2), 1)) * _up(S, 2)
        x22_res = x22
        x21_res, x22_res = self.ex12(x21_res, x22_res)
        for rb1, rb2 in zip(self.RB21, self.RB22):
            x21_res, x22_res = rb1(x21_res), rb2(x22_res)
        x21 = x21 + self.conv21_tail(x21_res)
        x22 = x22 + self.conv22_tail(x22_res)
        # ×4
        x31, x31_res, x32, x32_res = x21, x21, x22, x22
        x33 = F.relu_(self.ps23(self.conv23(x22)))
        x33 = x33 + self.conv33_head(torch.cat((x33, T1), 1)) * _up(S, 4)
        x33_res = x33
        x31_res, x32_res, x33_res = self.ex123(x31_res, x32_res, x33_res)
        for rb1, rb2, rb3 in zip(self.RB31, self.RB32, self.RB33):
            x31_res, x32_res, x33_res = rb1(x31_res), rb2(x32_res), rb3(x33_res)
        x31 = x31 + self.conv31_tail(x31_res)
        x32 = x32 + self.conv32_tail(x32_res)
        x33 = x33 + self.conv33_tail(x33_res)
        return self.merge_tail(x31, x32, x33)


# ----------------------------------------------------------------------------------------------
# search & transfer


def unfold_normalised(feat: torch.Tensor) -> torch.Tensor:
    """3×3 patches of ``feat`` (B, C, h, w) as unit vectors: (B, h*w, 9C)."""
    u = F.unfold(feat, kernel_size=3, padding=1)  # (B, 9C, hw)
    return F.normalize(u, dim=1).transpose(1, 2)


def value_table(v: torch.Tensor, block: int) -> torch.Tensor:
    """Reference textures (N, C, h*b, w*b) as rows of b×b blocks on a zero-padded (h+2)×(w+2) grid:
    (N*(h+2)*(w+2), C*b*b)."""
    b = block
    vp = F.pad(v, (b, b, b, b))
    n, c, hh, ww = vp.shape
    gh, gw = hh // b, ww // b
    return vp.reshape(n, c, gh, b, gw, b).permute(0, 2, 4, 1, 3, 5).reshape(n * gh * gw, c * b * b)


def transfer(rows0: torch.Tensor, ry: torch.Tensor, rx: torch.Tensor, grid_w: int, tables, blocks, channels):
    """Hard-attention texture transfer (the official unfold/gather/fold, without materialising patches).

    ``rows0`` (B, h, w): first table row of the matched reference; ``ry, rx``: matched key position;
    ``grid_w``: padded grid width (reference key width + 2). Output position ``u`` averages, over the 3×3
    offsets ``o`` whose query ``u - o`` lies in the tile, the block at key position ``idx(u - o) + o``
    (zero outside the reference) — exactly what folding the gathered 3×3 patches does, divided by the
    number of contributions instead of a constant 9. Returns one tensor (B, C, h*b, w*b) per table.
    """
    B, h, w = ry.shape
    zero_rows = [t.shape[0] - 1 for t in tables]  # each table ends with a zero row
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in tables)
    acc = [None] * len(tables)
    count = torch.zeros((B, h, w), device=ry.device, dtype=tables[0].dtype)
    shifted = torch.empty_like(ry)
    for oy in (-1, 0, 1):
        for ox in (-1, 0, 1):
            src = rows0 + (ry + oy + 1) * grid_w + (rx + ox + 1)  # rows at the source queries
            # shift: out[q] = src[q - o]; -1 where q - o lies outside the tile
            shifted.fill_(-1)
            ys, yd = (slice(0, h - oy), slice(oy, h)) if oy >= 0 else (slice(-oy, h), slice(0, h + oy))
            xs, xd = (slice(0, w - ox), slice(ox, w)) if ox >= 0 else (slice(-ox, w), slice(0, w + ox))
            shifted[:, yd, xd] = src[:, ys, xs]
            count[:, yd, xd] += 1
            flat = shifted.reshape(-1)
            valid = flat >= 0
            for i, t in enumerate(tables):
                idx = torch.where(valid, flat, zero_rows[i])
                g = t.index_select(0, idx)
                if acc[i] is None:
                    acc[i] = g
                elif grad:
                    acc[i] = acc[i] + g
                else:
                    acc[i].add_(g)
    out = []
    inv = (1.0 / count.clamp(min=1)).reshape(-1, 1)
    for a, b, c in zip(acc, blocks, channels):
        a = (a * inv.to(a.dtype)).reshape(B, h, w, c, b, b).permute(0, 3, 1, 4, 2, 5).reshape(B, c, h * b, w * b)
        out.append(a)
    return out


def running_search(q: torch.Tensor, keys: torch.Tensor, slab: int = 4096, best=None, arg=None, offset: int = 0):
    """Max/argmax of ``q @ keys`` over key columns, streamed in slabs (memory ~ B·Nq·slab).

    ``q`` (B, Nq, D); ``keys`` (D, Nk) shared or (B, D, Nk). ``best``/``arg`` continue an earlier
    search; returned indices are ``offset + column``. Ties keep the earliest column.
    """
    B, Nq, _ = q.shape
    nk = keys.shape[-1]
    if best is None:
        best = q.new_full((B, Nq), -float("inf"))
        arg = torch.zeros((B, Nq), dtype=torch.long, device=q.device)
    for s0 in range(0, nk, slab):
        r = torch.matmul(q, keys[..., s0 : s0 + slab])
        m, a = r.max(dim=2)
        m = m.to(best.dtype)
        upd = m > best
        best = torch.where(upd, m, best)
        arg = torch.where(upd, a + (s0 + offset), arg)
    return best, arg


# ----------------------------------------------------------------------------------------------
# the model


class TTSR(nn.Module):
    """TTSR generator. ``forward(lr, ref)`` is the training path (one or ``k`` references per sample);
    inference on images of any size with a reference bank is :func:`matrestore.sr.enhance`."""

    def __init__(self, cfg: SRConfig):
        super().__init__()
        if int(cfg.scale) != 4:
            raise InputError(f"the TTSR network upsamples by 4 (×2 twice); scale {cfg.scale} is not supported.")
        if cfg.ref_crop % cfg.scale:
            raise InputError(f"ref_crop {cfg.ref_crop} must be a multiple of the scale {cfg.scale}.")
        self.cfg = cfg
        self.lte = LTE(cfg.lte_channels, cfg.lte_in_channels)
        self.main = MainNet(cfg)
        self.upsample = BicubicUpsample(cfg.scale)
        tail = self.main.merge_tail.conv_tail2
        with torch.no_grad():  # start close to the bicubic baseline
            tail.weight.mul_(0.1)
            tail.bias.zero_()

    @property
    def scale(self) -> int:
        return int(self.cfg.scale)

    # --- pieces used by training, reference features and enhance -----------------------------
    def query(self, lr_up):
        """relu3_1 texture features of LR↑ (B, c3, h, w): the queries, and the tile embedding source."""
        return self.lte(lr_up, levels=(3,))[0]

    def ref_dsup(self, ref):
        """Ref↓↑: area-average down-sampling then the same bicubic up-sampling as LR↑."""
        return self.upsample(F.avg_pool2d(ref, self.scale))

    def ref_features(self, ref):
        """``(k3, (v1, v2, v3))`` for references (N, 1, H, W): keys from Ref↓↑ relu3_1, values = LTE(Ref)."""
        k3 = self.lte(self.ref_dsup(ref), levels=(3,))[0]
        v1, v2, v3 = self.lte(ref, levels=(1, 2, 3))
        return k3, (v1, v2, v3)

    @staticmethod
    def embed(feat3: torch.Tensor) -> torch.Tensor:
        """Embedding vector per image for the reference selector: channel means and standard deviations
        of relu3_1 features (size-independent), (B, 2·c3)."""
        f = feat3.float().flatten(2)
        return torch.cat((f.mean(2), f.std(2, unbiased=False)), 1)

    def decode(self, lr, lr_up, S, T):
        x = self.main(lr, S, T[2], T[1], T[0])
        return lr_up + x if self.cfg.residual else x

    # --- training path -----------------------------------------------------------------------
    def forward(self, lr, ref, return_aux: bool = False):
        """``lr`` (B, 1, h, w) and ``ref`` (B, 1, H, W) or (B, k, 1, H, W): sample ``b`` searches its own
        references. Returns the SR image (B, 1, 4h, 4w) (and ``S``, ``T`` with ``return_aux``)."""
        if ref.dim() == 4:
            ref = ref.unsqueeze(1)
        B, k = ref.shape[:2]
        lr_up = self.upsample(lr)
        q = unfold_normalised(self.query(lr_up))  # (B, Nq, D)
        k3, (v1, v2, v3) = self.ref_features(ref.reshape(B * k, *ref.shape[2:]))
        hr_, wr_ = k3.shape[-2:]
        P = hr_ * wr_
        keys = unfold_normalised(k3).reshape(B, k * P, -1).transpose(1, 2)  # (B, D, kP)
        S, arg = running_search(q, keys, slab=1 << 30)
        h, w = lr.shape[-2:]
        gw = wr_ + 2
        pp = (hr_ + 2) * gw
        slot = arg // P
        pos = arg % P
        base = (torch.arange(B, device=lr.device).view(B, 1) * k + slot) * pp
        ry, rx = pos // wr_, pos % wr_
        tables = []
        for v, b in zip((v1, v2, v3), (4, 2, 1)):
            t = value_table(v, b)
            tables.append(torch.cat((t, t.new_zeros(1, t.shape[1])), 0))
        T = transfer(base.view(B, h, w), ry.view(B, h, w), rx.view(B, h, w), gw, tables, (4, 2, 1), self.cfg.lte_channels)
        S = S.view(B, 1, h, w)
        sr = self.decode(lr, lr_up, S, T)
        if return_aux:
            return sr, S, T
        return sr


class Discriminator(nn.Module):
    """WGAN-GP critic: strided convolutions with LeakyReLU (no normalisation), global average to a score.
    Fully convolutional, so any patch size works."""

    def __init__(self, n: int = 32):
        super().__init__()
        chans = [(1, n, 1), (n, n, 2), (n, 2 * n, 1), (2 * n, 2 * n, 2), (2 * n, 4 * n, 1), (4 * n, 4 * n, 2), (4 * n, 8 * n, 1), (8 * n, 8 * n, 2)]
        layers = []
        for cin, cout, s in chans:
            layers += [nn.Conv2d(cin, cout, 3, s, 1), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(8 * n, 1, 3, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x).mean(dim=(1, 2, 3))


def count_parameters(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def deepen(model: TTSR, res_blocks) -> TTSR:
    """A deeper copy of ``model`` that computes the same function (Net2DeeperNet): ``res_blocks`` (per stage,
    none fewer than the model has) adds residual blocks whose second convolution is zero, i.e. identities
    until trained, so fine-tuning starts from the model's results. The receptive radius (enhance's halo)
    is that of the deeper architecture, measured before the new blocks are zeroed; of the metadata only
    a ``name`` saying what it was grown from is kept."""
    old = tuple(model.cfg.res_blocks)
    new_blocks = tuple(int(b) for b in res_blocks)
    if len(new_blocks) != len(old) or any(n < o for n, o in zip(new_blocks, old)):
        raise InputError(f"deepen: res_blocks {new_blocks} must have {len(old)} entries, none below {old}.")
    deeper = build_model(model.cfg, res_blocks=new_blocks)
    if new_blocks != old:  # measured now, with every block active: identities would hide their reach
        from .enhance import measure_receptive_radius

        measure_receptive_radius(deeper)
    missing, unexpected = deeper.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(".conv" not in k for k in missing):
        raise InputError(f"deepen: the architectures do not match ({sorted(unexpected) or sorted(missing)[:3]}).")
    with torch.no_grad():
        for name in missing:
            if ".conv2." in name:
                deeper.get_parameter(name).zero_()
    base = (getattr(model, "meta", None) or {}).get("name", f"a {model.cfg.preset}-preset model")
    deeper.meta = {"name": f"{base}, deepened from {old} to {new_blocks} residual blocks"}
    return deeper.to(next(model.parameters()).device)


def build_model(preset: str = "cpu", seed: int | None = None, **overrides) -> TTSR:
    """A new (untrained) TTSR generator: ``preset`` in ``"tiny"``, ``"cpu"`` (default), ``"paper"``;
    keyword ``overrides`` change single :class:`SRConfig` fields."""
    if isinstance(preset, SRConfig):
        cfg = copy.deepcopy(preset)
    else:
        if preset not in PRESETS:
            raise InputError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}.")
        cfg = copy.deepcopy(PRESETS[preset])
    bad = set(overrides) - {f.name for f in fields(SRConfig)}
    if bad:
        raise InputError(f"unknown model option(s) {sorted(bad)}.")
    for k, v in overrides.items():
        setattr(cfg, k, tuple(v) if isinstance(v, list) else v)
    if "receptive_radius" not in overrides and set(overrides) & {"feats", "res_blocks", "lte_channels", "lte_in_channels", "scale"}:
        cfg.receptive_radius = None  # a changed architecture: measured when first needed
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return TTSR(cfg)
    return TTSR(cfg)
