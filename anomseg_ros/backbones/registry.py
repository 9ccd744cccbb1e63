"""The backbone registry: every segmentation network is built by name."""
from typing import List

from torch import nn

from anomseg_ros.registry import Registry

BACKBONES: Registry[nn.Module] = Registry('backbone')
register_backbone = BACKBONES.register


def create_backbone(name: str, *, num_classes: int, **kwargs) -> nn.Module:
    """Build the backbone ``name`` with ``num_classes`` outputs (untrained weights)."""
    return BACKBONES.get(name)(num_classes=num_classes, **kwargs)


def list_backbones() -> List[str]:
    return BACKBONES.names()
