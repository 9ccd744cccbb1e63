"""Segmentation backbones, registered by name.

Contract: a backbone takes ``(B,3,H,W)`` float and returns logits ``(B,C,H,W)`` in eval mode.
In training mode a backbone with auxiliary heads (BiSeNet) returns ``(logits, aux, ...)``, each
at the input size, and has an ``aux_weight``. Where it can, a backbone also offers
``forward_features`` / ``forward_head`` so scorers can reach its features.
"""
from anomseg_ros.backbones.registry import create_backbone, list_backbones, register_backbone
from anomseg_ros.backbones import bisenet, enet, erfnet, resnet  # noqa: F401  (register)

__all__ = ['create_backbone', 'list_backbones', 'register_backbone']
