"""Neural-network building blocks: backbones, projector and other heads, predictors."""

from sie.nn.backbones import ReferenceResNet18, TorchvisionResNet18, build_backbone
from sie.nn.heads import AugSelfHead, LinearClassifier, Projector, split_widths
from sie.nn.predictors import HypernetworkPredictor, MLPPredictor, batched_linear

__all__ = [
    "AugSelfHead",
    "HypernetworkPredictor",
    "LinearClassifier",
    "MLPPredictor",
    "Projector",
    "ReferenceResNet18",
    "TorchvisionResNet18",
    "batched_linear",
    "build_backbone",
    "split_widths",
]
