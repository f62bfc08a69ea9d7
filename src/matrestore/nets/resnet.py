"""ResNet encoders (ResNet18/34 layout) with torchvision's parameter names (``conv1.weight``,
``layer1.0.bn1.running_mean`` ...), so that an ImageNet ``resnet34-b627a593.pth`` state dict loads into
the full-width network directly. No torchvision needed; weights only ever come from a local file the
user names (:func:`load_resnet_imagenet`); nothing is downloaded.

``width`` scales every stage (64 = torchvision's); ``layers`` are the BasicBlocks per stage ((3, 4, 6, 3)
= ResNet34); ``stages`` keeps the first 1–4 stages (fewer stages: a smaller receptive field).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from .._validate import InputError

__all__ = ["BasicBlock", "ResNetEncoder", "resnet34_encoder", "load_resnet_imagenet", "RESNET34_LAYERS"]

RESNET34_LAYERS = (3, 4, 6, 3)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + idt)


class ResNetEncoder(nn.Module):
    """``forward(x)`` returns the features ``[stem (/2), layer1 (/4), layer2 (/8), ...]``."""

    def __init__(self, in_channels: int = 3, width: int = 64, layers=RESNET34_LAYERS, stages: int = 4):
        super().__init__()
        if not 1 <= stages <= len(layers):
            raise ValueError(f"stages must be in 1..{len(layers)}")
        self.in_channels, self.width, self.layers_cfg, self.stages = int(in_channels), int(width), tuple(layers), int(stages)
        w = self.width
        self.conv1 = nn.Conv2d(self.in_channels, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = w
        self.channels = [w]
        for i in range(self.stages):
            cout = w * 2**i
            blocks = [BasicBlock(cin, cout, 1 if i == 0 else 2)] + [BasicBlock(cout, cout) for _ in range(self.layers_cfg[i] - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.channels.append(cout)
            cin = cout

    @property
    def stride(self) -> int:
        return 2 ** (self.stages + 1)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        feats = [x]
        x = self.maxpool(x)
        for i in range(self.stages):
            x = getattr(self, f"layer{i + 1}")(x)
            feats.append(x)
        return feats


def resnet34_encoder(in_channels: int = 3, width: int = 64, stages: int = 4) -> ResNetEncoder:
    return ResNetEncoder(in_channels, width, RESNET34_LAYERS, stages)


def load_resnet_imagenet(module: ResNetEncoder, path) -> str:
    """Load a torchvision ImageNet ResNet state dict (local file, ``torch.load(weights_only=True)``) into
    ``module`` (``fc.*`` ignored). A 1-channel module gets ``conv1`` summed over RGB; a module with more
    than 3 channels gets the RGB mean repeated, scaled by 3/C. Returns a description for model files."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"ResNet weights file not found: {p}")
    if module.width != 64:
        raise InputError(f"ImageNet ResNet weights need width 64; this encoder has width {module.width}.")
    try:
        state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read ResNet weights from {p}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = module.state_dict()
    new = {}
    for k, v in own.items():
        if k not in state:
            raise InputError(f"{p.name} is not a torchvision ResNet state dict of this depth (missing {k}).")
        if k.endswith("num_batches_tracked"):
            new[k] = v
            continue
        t = state[k].float()
        if k == "conv1.weight" and t.shape[1] != module.in_channels:
            if module.in_channels == 1:
                t = t.sum(1, keepdim=True)
            else:
                t = t.mean(1, keepdim=True).repeat(1, module.in_channels, 1, 1) * (3.0 / module.in_channels)
        if t.shape != v.shape:
            raise InputError(f"{p.name}: {k} has shape {tuple(t.shape)}, the encoder {tuple(v.shape)}.")
        new[k] = t
    module.load_state_dict(new)
    return f"ImageNet ResNet ({p.name})"
