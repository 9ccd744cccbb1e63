"""ResNet-50 for segmentation as paper 000 section IV.C builds it, and the self-supervised
checkpoints it starts from.

torchvision's ResNet-50 without the average pooling and the fully connected layer; a 1x1
convolution turns the 2048 channels at 1/32 into the classes and bilinear upsampling brings them
to the input size. ``load_pretrained_backbone`` reads the published self-supervised weights in
their own formats:

- Barlow Twins (``facebookresearch/barlowtwins``, ``resnet50.pth``): a plain torchvision state
  dict, no ``fc``;
- MoCo v2 (``facebookresearch/moco``, ``moco_v2_800ep_pretrain.pth.tar``): ``state_dict`` with
  ``module.encoder_q.`` keys, the MLP head ``fc.*`` and the key encoder / queue to drop;
- SimSiam (``facebookresearch/simsiam``, ``checkpoint_0099.pth.tar``): ``state_dict`` with
  ``module.encoder.`` keys, the projector ``fc.*`` and ``module.predictor.*`` to drop.
"""
import os
from typing import Dict, List, Tuple

import torch
from torch import nn
import torch.nn.functional as F

from anomseg_ros.backbones.base import Backbone
from anomseg_ros.backbones.registry import register_backbone
from anomseg_ros.errors import CheckpointError

SSL_FORMATS = {  # name: the prefix of the ResNet-50 keys in its state dict
    'barlowtwins': '',
    'mocov2': 'module.encoder_q.',
    'simsiam': 'module.encoder.',
}


@register_backbone('resnet50')
class ResNet50Seg(Backbone):
    """ResNet-50 features at 1/32, a 1x1 classifier, bilinear upsampling to the input."""

    classifier_key, classifier_axis = 'classifier.weight', 0
    last_block = ('backbone.layer4.2.', 'classifier.')
    has_pretrained_encoder = True
    feature_layers = ('backbone.relu', 'backbone.layer1', 'backbone.layer2')

    def __init__(self, num_classes: int = 20):
        super().__init__(num_classes)
        # imported here: torchvision's import pulls in torch._dynamo (about 2 s), which
        # every start of the node paid for backbones it did not build
        from torchvision.models import resnet50
        resnet = resnet50(weights=None)
        del resnet.avgpool, resnet.fc  # the classification layers the paper removes
        self.backbone = resnet
        self.classifier = nn.Conv2d(2048, num_classes, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        r = self.backbone
        x = r.maxpool(r.relu(r.bn1(r.conv1(x))))
        return r.layer4(r.layer3(r.layer2(r.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.forward_features(x))
        return F.interpolate(logits, size=x.shape[2:], mode='bilinear', align_corners=False)

    def backbone_parameters(self):
        """What ``--freeze-backbone`` freezes: all but the classifier."""
        return self.backbone.parameters()


def detect_ssl_format(state: Dict[str, torch.Tensor]) -> str:
    """The format of a self-supervised checkpoint's state dict, from its keys."""
    for name in ('mocov2', 'simsiam'):
        if any(k.startswith(SSL_FORMATS[name] + 'conv1.') for k in state):
            return name
    if 'conv1.weight' in state and 'layer4.2.bn3.weight' in state:
        return 'barlowtwins'
    raise CheckpointError(f'the keys ({", ".join(sorted(state)[:3])} ...) are none of the '
                          f'self-supervised ResNet-50 formats {", ".join(SSL_FORMATS)}: '
                          f'expected conv1.weight, module.encoder_q.conv1.weight or '
                          f'module.encoder.conv1.weight')


SslState = Tuple[Dict[str, torch.Tensor], str, List[str]]


def read_ssl_state(path: str, ssl_format: str = 'auto') -> SslState:
    """The ResNet-50 weights of the self-supervised checkpoint at ``path``, renamed to
    torchvision's keys without ``fc``; returns them, the format, and the keys dropped."""
    if not os.path.isfile(path):
        raise CheckpointError(f'pretrained backbone {path!r} does not exist')
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:
        raise CheckpointError(f'pretrained backbone {path!r} cannot be read as a PyTorch file '
                              f'({type(exc).__name__})') from None
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f'{path!r} holds no state dict')
    if ssl_format == 'auto':
        ssl_format = detect_ssl_format(state)
    elif ssl_format not in SSL_FORMATS:
        raise CheckpointError(f'unknown self-supervised format {ssl_format!r}; choose one of '
                              f'auto, {", ".join(SSL_FORMATS)}')
    prefix = SSL_FORMATS[ssl_format]
    kept, dropped = {}, []
    for key, value in state.items():
        name = key[len(prefix):] if key.startswith(prefix) else None
        if name is None or name.startswith('fc.'):
            dropped.append(key)
        else:
            kept[name] = value
    return kept, ssl_format, dropped


def load_pretrained_backbone(model: ResNet50Seg, path: str, ssl_format: str = 'auto') -> str:
    """Load the self-supervised ResNet-50 at ``path`` into ``model.backbone`` (every backbone
    key must be there, nothing else may be); returns the format it was read as."""
    state, ssl_format, _ = read_ssl_state(path, ssl_format)
    expected = set(model.backbone.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise CheckpointError(f'{path!r} read as {ssl_format} does not fit ResNet-50: '
                              f'{len(missing)} missing keys {missing[:3]}, {len(unexpected)} '
                              f'unexpected {unexpected[:3]}')
    try:
        model.backbone.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f'{path!r} does not fit ResNet-50: '
                              f'{str(exc).splitlines()[-1].strip()}') from None
    return ssl_format
