"""Training losses of TTSR (SEM paper eqs. 6-9).

* reconstruction (eq. 6): mean absolute error;
* perceptual (eq. 7, first term): MSE of VGG19 relu5_1 features (the layer after the 13th
  convolution) when ImageNet VGG19 weights are available; without them, MSE of the relu3_1 features
  of a frozen snapshot of the model's own LTE (random-init VGG features would be a poor and slow
  judge) — which one is used is reported in the logs and the model file;
* transferal perceptual (eq. 7, second term): MSE between LTE features of the SR image (frozen LTE
  snapshot) and the transferred textures T at the three scales, weighted by sigmoid(S) as in the
  official implementation;
* adversarial (eq. 8): WGAN-GP with gradient penalty weight λ = 10.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..nets.vgg import VGG19Features, find_vgg19_weights, load_vgg19_imagenet

__all__ = ["reconstruction_loss", "PerceptualLoss", "transferal_perceptual_loss", "gradient_penalty", "LOSS_WEIGHTS"]

LOSS_WEIGHTS = {"rec": 1.0, "per": 1e-2, "tper": 1e-2, "adv": 1e-3}


def reconstruction_loss(sr, hr):
    return F.l1_loss(sr, hr)


class PerceptualLoss(nn.Module):
    """MSE of features of a frozen network: ImageNet VGG19 relu5_1 if weights are found (``vgg_weights``
    path or the torch hub cache), else the relu3_1 output of a snapshot of the model's LTE, refreshed
    with :meth:`refresh` (the transferal loss uses the same snapshot)."""

    def __init__(self, model, vgg_weights=None):
        super().__init__()
        self.lte_copy = copy.deepcopy(model.lte).requires_grad_(False).eval()
        path = find_vgg19_weights(vgg_weights)
        self.vgg = None
        if path is not None:
            vgg = VGG19Features("relu5_1", in_channels=1)
            self.description = load_vgg19_imagenet(vgg, path) + " relu5_1"
            self.vgg = vgg.requires_grad_(False).eval()
            from ..nets.vgg import imagenet_normalisation

            m, s = imagenet_normalisation(1)
            self.register_buffer("mean", m, persistent=False)
            self.register_buffer("std", s, persistent=False)
        else:
            self.description = "LTE snapshot relu3_1 (no ImageNet VGG19 weights found)"

    @torch.no_grad()
    def refresh(self, model):
        self.lte_copy.load_state_dict(model.lte.state_dict())

    def lte_features(self, x):
        return self.lte_copy(x, levels=(1, 2, 3))

    def forward(self, sr, hr, sr_lte=None):
        if self.vgg is not None:
            f = lambda x: self.vgg(((x + 1) * 0.5 - self.mean) / self.std)  # noqa: E731
            with torch.no_grad():
                target = f(hr)
            return F.mse_loss(f(sr), target)
        with torch.no_grad():
            target = self.lte_copy(hr, levels=(3,))[0]
        feat = sr_lte[2] if sr_lte is not None else self.lte_copy(sr, levels=(3,))[0]
        return F.mse_loss(feat, target)


def transferal_perceptual_loss(sr_lte, T, S):
    """Σ over the three scales of MSE(φ_lte(SR)·σ(S), T·σ(S)) / 3 (official TTSR, ``use_S=True``)."""
    loss = 0.0
    for feat, t, f in zip(sr_lte, T, (4, 2, 1)):
        w = torch.sigmoid(F.interpolate(S, scale_factor=f, mode="bilinear", align_corners=False) if f > 1 else S)
        loss = loss + F.mse_loss(feat * w, t.detach() * w)
    return loss / 3.0


def gradient_penalty(disc, real, fake, lam: float = 10.0):
    """WGAN-GP term λ·E[(‖∇D(x̂)‖₂ − 1)²] on random interpolates x̂ of real and fake."""
    eps = torch.rand((real.shape[0], 1, 1, 1), device=real.device, dtype=real.dtype)
    x = (eps * real + (1 - eps) * fake).requires_grad_(True)
    d = disc(x)
    (g,) = torch.autograd.grad(d.sum(), x, create_graph=True)
    return lam * ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
