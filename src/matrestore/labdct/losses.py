"""Training losses.

* ``bce_dice`` (shipped): binary cross-entropy on the logits + soft Dice ``1 - 2 Σ p y / (Σ p + Σ y)`` over the
  batch (``p = sigmoid(logit)``): spots are ~0.3 % of the pixels; Dice keeps the rare class weighted.
* ``perceptual`` (the paper's eq. 3): on ``ŷ = sigmoid(logit)`` and the 0/1 content image ``y``,
  ``‖ŷ − y‖² / CHW + Σ_j ‖φ_j(ŷ) − φ_j(y)‖² / (C_j H_j W_j) + Σ_j ‖G_j(ŷ) − G_j(y)‖²_F / (C_j H_j W_j)``
  with ``φ_j`` the VGG16 features at relu1_2, relu2_2, relu3_3 and ``G_j = φ_j φ_jᵀ / (H_j W_j)`` their Gram
  matrices. VGG16 ImageNet weights come only from a local file (``vgg16_weights``); without it the loss
  network has fixed random weights (a random-feature loss; the model file says which).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["BCEDice", "PerceptualLoss", "make_loss"]


class BCEDice(nn.Module):
    description = "BCE + Dice"

    def forward(self, logits, target):
        bce = F.binary_cross_entropy_with_logits(logits, target)
        p = torch.sigmoid(logits)
        dice = 1.0 - (2.0 * (p * target).sum() + 1.0) / (p.sum() + target.sum() + 1.0)
        return bce + dice, {"bce": float(bce.detach()), "dice": float(dice.detach())}


class PerceptualLoss(nn.Module):
    TAPS = ("relu1_2", "relu2_2", "relu3_3")

    def __init__(self, vgg16_weights=None, seed: int = 0):
        super().__init__()
        from ..nets.vgg import VGG16Features, load_vgg16_imagenet

        g = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.vgg = VGG16Features("relu3_3", in_channels=1)
        torch.random.set_rng_state(g)
        self.description = "MSE + VGG16 features + Gram (random VGG16)"
        if vgg16_weights:
            self.description = "MSE + VGG16 features + Gram (" + load_vgg16_imagenet(self.vgg, vgg16_weights) + ")"
        for p in self.vgg.parameters():
            p.requires_grad_(False)
        self.vgg.eval()

    @staticmethod
    def _gram(f):
        b, c, h, w = f.shape
        x = f.reshape(b, c, h * w)
        return x @ x.transpose(1, 2) / (h * w)

    def forward(self, logits, target):
        y = torch.sigmoid(logits)
        pix = F.mse_loss(y, target)
        fy = self.vgg(y, self.TAPS)
        ft = self.vgg(target, self.TAPS)
        feat = sum(F.mse_loss(a, b) for a, b in zip(fy, ft))
        gram = 0.0
        for a, b in zip(fy, ft):
            c, h, w = a.shape[1:]
            gram = gram + ((self._gram(a) - self._gram(b)) ** 2).sum((1, 2)).mean() / (c * h * w)
        total = pix + feat + gram
        return total, {"pixel": float(pix.detach()), "feature": float(feat.detach()), "gram": float(gram.detach())}


def make_loss(name: str, vgg16_weights=None) -> nn.Module:
    if name == "bce_dice":
        return BCEDice()
    if name == "perceptual":
        return PerceptualLoss(vgg16_weights)
    from .._validate import InputError

    raise InputError(f"unknown loss {name!r}; choose 'bce_dice' or 'perceptual'.")
