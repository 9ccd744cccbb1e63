"""What every segmentation network says about itself, on its class (as timm's
``pretrained_cfg``), so that code elsewhere asks the backbone instead of keeping tables about
it: the classifier (to read a plain state dict and to add outputs), the final classification
block (what PEBAL fine-tunes), whether it splits into ``forward_features`` / ``forward_head``
(SLEEG's head, feature scorers), its auxiliary heads' loss weight, and whether its encoder can
start from self-supervised weights (``backbone_parameters``), and how its public weights see
images (``pretrained_cfg``)."""
import dataclasses
from typing import Tuple

from torch import nn


@dataclasses.dataclass(frozen=True)
class PretrainedCfg:
    """How a network's public weights (a plain state dict, which carries no metadata) see
    images: RGB in [0, 1], normalised by ``mean`` and ``std``, at ``input_size_hw``. The
    default is the public Cityscapes ERFNet's: no normalisation, 1024x512."""

    mean: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    input_size_hw: Tuple[int, int] = (512, 1024)


class Backbone(nn.Module):
    """Base class of the registered segmentation networks.

    Contract: ``(B,3,H,W)`` float in, logits ``(B,C,H,W)`` out in eval mode; in training mode
    a backbone with auxiliary heads returns ``(logits, aux, ...)``, each at the input size.
    """

    # state-dict key of the classifier's weight and the axis of its classes there
    classifier_key: str = ''
    classifier_axis: int = 0
    # parameter-name prefixes of the final classification block
    last_block: Tuple[str, ...] = ()
    # offers forward_features (decoder features) and forward_head (features -> logits)
    has_features: bool = False
    # weight of the auxiliary heads' loss in training (paper 000 eq. 5); 0 = no auxiliary heads
    aux_weight: float = 0.0
    # offers backbone_parameters(): an encoder that self-supervised weights can initialise
    has_pretrained_encoder: bool = False
    # module names whose outputs are image features at 1/2, 1/4 and 1/8 resolution (SynBoost's
    # perceptual difference and dissimilarity encoders take them from the segmentation model)
    feature_layers: Tuple[str, ...] = ()
    # the input's height and width must be multiples of this (ERFNet's three 2x downsamplings
    # are concatenated with pooled copies of themselves: 8); 1 = any size
    input_multiple: int = 1
    # how a plain state dict of this network (its public weights) is read: normalisation and
    # input size; a new training's normalisation too, unless it is given
    pretrained_cfg: PretrainedCfg = PretrainedCfg()

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
