"""Segmentation backbones, registered by name.

Contract: a backbone takes ``(B,3,H,W)`` float and returns logits ``(B,C,H,W)``; where it can,
it also offers ``forward_features`` / ``forward_head`` so scorers can reach its features.
"""
from anomseg_ros.backbones.registry import create_backbone, list_backbones, register_backbone
from anomseg_ros.backbones import erfnet  # noqa: F401  (registers 'erfnet')

__all__ = ['create_backbone', 'list_backbones', 'register_backbone']
