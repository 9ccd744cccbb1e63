"""Segmentation backbones, registered by name; each is a ``Backbone`` that declares what it is
(classifier, last block, features, auxiliary heads: see ``backbones/base.py``)."""
from anomseg_ros.backbones.base import Backbone, PretrainedCfg
from anomseg_ros.backbones.registry import (backbone_class, check_input_size, create_backbone,
                                            list_backbones, pretrained_cfg, register_backbone,
                                            with_num_classes)
from anomseg_ros.backbones import bisenet, enet, erfnet, resnet  # noqa: F401  (register)

__all__ = ['Backbone', 'backbone_class', 'check_input_size', 'create_backbone', 'list_backbones',
           'pretrained_cfg', 'PretrainedCfg', 'register_backbone', 'with_num_classes']
