"""Classifier heads that replace a backbone's linear logits.

``IsoMaxPlusHead`` is the distance-based last layer of Enhanced Isotropy Maximization (IsoMax+,
Macedo and Ludermir, arXiv:2105.14399; paper 001): the logit of class ``j`` at a pixel is
``-|d_s| * || z/|z| - p_j/|p_j| ||`` for the pixel's output vector ``z``, learnable prototypes
``p_j`` (initialised N(0, 1)) and a learnable distance scale ``d_s`` (initialised 1). It goes on
top of any backbone's outputs, so the backbone keeps its own classifier as the feature layer.
The loss that goes with it (the entropic scale) is ``training.losses.IsoMaxPlusLoss``.
"""
from typing import Tuple, Union

import torch
from torch import nn
import torch.nn.functional as F

HEADS = ('linear', 'isomax+')


class IsoMaxPlusHead(nn.Module):
    """Negative scaled distances between normalised features and prototypes, per pixel."""

    def __init__(self, num_features: int, num_classes: int):
        super().__init__()
        self.prototypes = nn.Parameter(torch.empty(num_classes, num_features))
        self.distance_scale = nn.Parameter(torch.empty(1))
        nn.init.normal_(self.prototypes, mean=0.0, std=1.0)
        nn.init.constant_(self.distance_scale, 1.0)

    @torch.no_grad()
    def keep_argmax(self) -> None:
        """Prototypes on the axes (``p_j = e_j``, features = the backbone's logits): the
        nearest prototype is then the largest logit, so a trained backbone keeps its
        segmentation when the head is put on it (IsoMax+'s N(0, 1) start would scramble it)."""
        if self.prototypes.shape[0] != self.prototypes.shape[1]:
            raise ValueError('keep_argmax needs as many features as classes')
        self.prototypes.copy_(torch.eye(self.prototypes.shape[0]))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = F.normalize(features, dim=1)                       # (B,F,H,W)
        p = F.normalize(self.prototypes, dim=1)                # (C,F)
        # ||z - p||^2 = 2 - 2 z.p for unit vectors; clamp against rounding below 0
        cosine = torch.einsum('bfhw,cf->bchw', z, p)
        distances = torch.sqrt(torch.clamp(2.0 - 2.0 * cosine, min=1e-12))
        return -torch.abs(self.distance_scale) * distances


Output = Union[torch.Tensor, Tuple[torch.Tensor, ...]]


class WithIsoMaxPlus(nn.Module):
    """A backbone whose outputs (and auxiliary outputs) go through one ``IsoMaxPlusHead``."""

    def __init__(self, backbone: nn.Module, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = IsoMaxPlusHead(num_classes, num_classes)
        self.num_classes = num_classes
        # what the backbone declares holds for the whole model (backbones/base.py); any module
        # may sit under the head, a plain one declares nothing
        self.aux_weight = getattr(backbone, 'aux_weight', 0.0)
        self.has_features = getattr(backbone, 'has_features', False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.forward_head(features))

    def forward(self, x: torch.Tensor) -> Output:
        out = self.backbone(x)
        if isinstance(out, tuple):
            return tuple(self.head(o) for o in out)
        return self.head(out)
