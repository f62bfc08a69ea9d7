"""Shared network building blocks (no Qt/napari): VGG19 feature extractors with torchvision parameter
names, residual blocks and an exact torch version of :func:`matrestore.baselines.upsample` (bicubic)."""

from .blocks import BicubicUpsample, ResBlock, conv1x1, conv3x3
from .resnet import ResNetEncoder, load_resnet_imagenet, resnet34_encoder
from .vgg import VGG16Features, VGG19Features, find_vgg19_weights, load_vgg16_imagenet, load_vgg19_imagenet

__all__ = [
    "BicubicUpsample",
    "ResBlock",
    "conv1x1",
    "conv3x3",
    "VGG19Features",
    "VGG16Features",
    "load_vgg16_imagenet",
    "ResNetEncoder",
    "resnet34_encoder",
    "load_resnet_imagenet",
    "find_vgg19_weights",
    "load_vgg19_imagenet",
]
