"""VGG19 feature extractor with torchvision's parameter names (``features.0.weight`` ...).

No torchvision needed: the layer list is rebuilt here so that an ImageNet ``vgg19-dcbb9e9d.pth`` state
dict (torchvision's file) loads into it directly. Weights are only ever read from a local file the user
names, or from the torch hub cache if it is already there; nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from .._validate import InputError

VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HUB_FILE = "vgg19-dcbb9e9d.pth"


def layer_names(cfg=VGG19_CFG) -> list[str]:
    """Names of torchvision's ``vgg19().features`` (or the layers of ``cfg``) in order: conv1_1, relu1_1, ..."""
    names, block, idx = [], 1, 1
    for v in cfg:
        if v == "M":
            names.append(f"pool{block}")
            block, idx = block + 1, 1
        else:
            names += [f"conv{block}_{idx}", f"relu{block}_{idx}"]
            idx += 1
    return names


LAYER_INDEX = {n: i for i, n in enumerate(layer_names())}


class _VGGFeatures(nn.Module):
    """The first layers of a VGG (``CFG``) up to (and including) ``upto``, named like torchvision's."""

    CFG: list = VGG19_CFG
    INDEX: dict = LAYER_INDEX
    NAME = "VGG19"

    def __init__(self, upto: str, in_channels: int = 3, widths=(64, 128, 256, 512, 512)):
        super().__init__()
        if upto not in self.INDEX:
            raise ValueError(f"unknown {self.NAME} layer {upto!r}")
        self.upto = upto
        self.in_channels = int(in_channels)
        self.widths = tuple(int(w) for w in widths)
        layers: list[nn.Module] = []
        cin, block = self.in_channels, 0
        for v in self.CFG:
            if len(layers) > self.INDEX[upto]:
                break
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                block += 1
            else:
                w = self.widths[block]
                layers += [nn.Conv2d(cin, w, 3, padding=1), nn.ReLU(inplace=True)]
                cin = w
        self.features = nn.Sequential(*layers[: self.INDEX[upto] + 1])

    @property
    def imagenet_compatible(self) -> bool:
        return self.widths == (64, 128, 256, 512, 512)[: len(self.widths)]

    def forward(self, x, taps=None):
        if taps is None:
            return self.features(x)
        want = {self.INDEX[t]: t for t in taps}
        last = max(want)
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in want:
                out[want[i]] = x
            if i == last:
                break
        return [out[t] for t in taps]


class VGG19Features(_VGGFeatures):
    """The first layers of VGG19 up to (and including) ``upto`` (e.g. ``"relu3_1"``).

    ``widths`` replaces the channel numbers of the conv blocks (1..5) for slim variants with the same
    structure; with the default widths the parameters are named and shaped like torchvision's, so
    ImageNet weights load. ``forward(x, taps)`` returns the outputs of the named layers (a list).
    """

    def __init__(self, upto: str = "relu5_1", in_channels: int = 3, widths=(64, 128, 256, 512, 512)):
        super().__init__(upto, in_channels, widths)


def find_vgg19_weights(path=None):
    """Path of ImageNet VGG19 weights: ``path`` if given (must exist), else the torch hub cache file
    ``~/.cache/torch/hub/checkpoints/vgg19-dcbb9e9d.pth`` if present, else ``None``. Never downloads."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise InputError(f"VGG19 weights file not found: {p}")
        return p
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")).expanduser()
    cand = hub / "hub" / "checkpoints" / HUB_FILE
    return cand if cand.is_file() else None


def load_vgg19_imagenet(module: VGG19Features, path) -> str:
    """Load torchvision ImageNet weights (``features.*``) into ``module`` from a local file.

    The file is read with ``torch.load(weights_only=True)`` (no code executed). A 1-channel module gets
    the first convolution folded for a grey input normalised with the mean of the ImageNet statistics,
    so that it computes what the RGB network computes on a grey image (away from the zero-padded border).
    Returns a short description for logs and model files.
    """
    if not module.imagenet_compatible:
        raise InputError("these VGG layers are a slim variant; ImageNet weights do not fit them.")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read VGG19 weights from {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = module.state_dict()
    new = {}
    for k in own:
        if k not in state:
            raise InputError(f"{path} is not a torchvision VGG19 state dict (missing {k}).")
        new[k] = state[k].float()
    w0, b0 = new["features.0.weight"], new["features.0.bias"]
    if module.in_channels == 1 and w0.shape[1] == 3:
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        g_mean, g_std = float(mean.mean()), float(std.mean())
        w_over_s = w0 / std
        new["features.0.weight"] = g_std * w_over_s.sum(1, keepdim=True)
        new["features.0.bias"] = b0 - (w_over_s * mean).sum((1, 2, 3)) + (w_over_s * g_mean).sum((1, 2, 3))
    elif w0.shape[1] != module.in_channels:
        raise InputError(f"VGG19 weights have {w0.shape[1]} input channels, the module {module.in_channels}.")
    module.load_state_dict(new)
    return f"ImageNet VGG19 ({Path(path).name})"


def imagenet_normalisation(in_channels: int):
    """(mean, std) tensors of shape (1, C, 1, 1) for inputs in [0, 1] (grey: the means of the RGB values)."""
    if in_channels == 3:
        return torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    m = sum(IMAGENET_MEAN) / 3
    s = sum(IMAGENET_STD) / 3
    return torch.full((1, in_channels, 1, 1), m), torch.full((1, in_channels, 1, 1), s)


# ------------------------------------------------------------------------------------------ VGG16
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def vgg16_layer_names() -> list[str]:
    """Names of torchvision's ``vgg16().features`` entries in order: conv1_1, relu1_1, ..., pool5."""
    return layer_names(VGG16_CFG)


VGG16_LAYER_INDEX = {n: i for i, n in enumerate(vgg16_layer_names())}


class VGG16Features(_VGGFeatures):
    """The first layers of VGG16 up to ``upto`` (e.g. ``"relu3_3"``), parameters named like torchvision's
    ``vgg16().features`` (ImageNet ``vgg16-397923af.pth`` loads with :func:`load_vgg16_imagenet`).
    ``forward(x, taps)`` returns the outputs of the named layers (a list)."""

    CFG = VGG16_CFG
    INDEX = VGG16_LAYER_INDEX
    NAME = "VGG16"

    def __init__(self, upto: str = "relu3_3", in_channels: int = 3, widths=(64, 128, 256, 512, 512)):
        super().__init__(upto, in_channels, widths)


def load_vgg16_imagenet(module: VGG16Features, path) -> str:
    """Load torchvision ImageNet VGG16 weights (``features.*``) from a local file into ``module``, the
    same way :func:`load_vgg19_imagenet` does for VGG19 (grey input: first convolution folded)."""
    return load_vgg19_imagenet(module, path).replace("VGG19", "VGG16")
