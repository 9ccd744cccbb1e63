"""The SynBoost network: a frozen segmentation model, the generator, the feature extractor
and the dissimilarity network, run in the order of paper 002 Fig. 2.

``SynboostModel(x)`` gives the segmentation logits with four maps appended, ``(B,C+4,H,W)``:
the dissimilarity network's logit, then H, D and V in [0, 1]. The scorers combine them; the
pipeline takes the labels from the first ``C`` channels as for any model.
"""
import dataclasses
import hashlib
from typing import Dict, Optional

import torch
from torch import nn

from anomseg_ros.errors import ConfigError
from anomseg_ros.labels import VOID_LABEL
from anomseg_ros.methods.synboost.maps import normalise, perceptual_difference, uncertainty_maps
from anomseg_ros.methods.synboost.networks import (
    DissimilarityNet, FeatureExtractor, Generator, ImageNetInput, one_hot, VGG16_LAYERS,
    vgg16_features)

NUM_MAPS = 4        # dissimilarity logit, H, D, V
PARTS = ('generator', 'dissimilarity')
FEATURES = ('segmenter', 'vgg16')


@dataclasses.dataclass
class SynboostConfig:
    """How the SynBoost network is built (kept in the checkpoint's ``method_params``)."""

    generator_channels: int = 32
    dissimilarity_width: int = 32
    uncertainty: bool = True    # False: the ablation without uncertainty maps (Table 2)
    features: str = 'segmenter'  # or 'vgg16' (weights from vgg16_path at training time)

    def __post_init__(self):
        if self.features not in FEATURES:
            raise ConfigError(f'SynBoost features are {" or ".join(FEATURES)}, got '
                              f'{self.features!r}')
        if self.generator_channels < 8 or self.dissimilarity_width < 8:
            raise ConfigError('SynBoost widths must be at least 8 channels')


def state_hash(module: nn.Module) -> str:
    """A short hash of a module's weights: which segmentation model a SynBoost was built on."""
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class SynboostModel(nn.Module):
    """See the module docstring. ``part`` is what trains (``generator`` or ``dissimilarity``);
    everything else stays in eval mode. With ``keep_synthesis`` set, each forward pass keeps
    its synthesised images in ``last_synthesis`` (normalised like the input)."""

    def __init__(self, segmenter: nn.Module, *, num_inlier: int, mean=(0.0, 0.0, 0.0),
                 std=(1.0, 1.0, 1.0), config: Optional[SynboostConfig] = None,
                 vgg16_path: Optional[str] = None):
        super().__init__()
        config = config or SynboostConfig()
        layers = getattr(type(segmenter), 'feature_layers', ())
        if config.features == 'segmenter' and not layers:
            raise ConfigError(f'SynBoost takes image features from the segmentation model\'s '
                              f'encoder, and {type(segmenter).__name__} declares no '
                              f'feature_layers; use features vgg16 with a vgg16 state dict')
        self.config = config
        self.segmenter = segmenter
        self.num_inlier = num_inlier
        self.num_classes = segmenter.num_classes + NUM_MAPS
        self.label_channels = num_inlier + 1  # the classes and void
        self.segmenter_features = FeatureExtractor(segmenter, layers) if layers else None
        if config.features == 'vgg16':
            self.vgg = vgg16_features(vgg16_path)
            self.vgg_input = ImageNetInput(mean, std)
            self.image_features = FeatureExtractor(self.vgg, VGG16_LAYERS,
                                                   to_input=self.vgg_input)
        else:
            self.image_features = self.segmenter_features
        self.generator = Generator(self.label_channels, channels=config.generator_channels,
                                   mean=mean, std=std)
        channels = [c for c, _ in self.image_features.channels()]
        self.dissimilarity = DissimilarityNet(channels, self.label_channels,
                                              width=config.dissimilarity_width,
                                              uncertainty=config.uncertainty)
        self.register_buffer('v_scale', torch.ones(()))  # set when the dissimilarity trains
        self.part: Optional[str] = None
        self.keep_synthesis = False
        self.last_synthesis: Optional[torch.Tensor] = None
        for parameter in self.segmenter.parameters():
            parameter.requires_grad_(False)

    def set_part(self, part: Optional[str]) -> int:
        """Make ``part`` the only trainable one; returns its parameter count."""
        if part is not None and part not in PARTS:
            raise ConfigError(f'SynBoost trains {" or ".join(PARTS)}, not {part!r}')
        self.part = part
        count = 0
        for name in PARTS:
            for parameter in getattr(self, name).parameters():
                parameter.requires_grad_(name == part)
                count += parameter.numel() if name == part else 0
        return count

    def train(self, mode: bool = True):
        super().train(False)
        if mode and self.part is not None:
            getattr(self, self.part).train(True)
        self.training = mode
        return self

    # ------------------------------------------------------------------ the steps of Fig. 2

    def segment(self, x: torch.Tensor):
        """Segmentation logits (float32), the input's image features from the same pass (the
        segmenter's), the predicted trainIds (255 void) and the uncertainty maps H, D."""
        logits, features = self.segmenter_features.extract(x, full=True) \
            if self.segmenter_features is not None else (self.segmenter(x), None)
        logits = logits.float()
        channels = self.num_inlier + (1 if logits.shape[1] > self.num_inlier else 0)
        prediction = logits[:, :channels].max(dim=1).indices
        prediction = prediction.masked_fill(prediction >= self.num_inlier, VOID_LABEL)
        entropy, distance = uncertainty_maps(logits[:, :self.num_inlier])
        return logits, features, prediction, entropy, distance

    def synthesise(self, labels: torch.Tensor) -> torch.Tensor:
        """trainIds ``(B,H,W)`` (255 void) to a normalised image ``(B,3,H,W)``."""
        return self.generator(one_hot(labels, self.num_inlier).to(self.generator.head.weight))

    def features(self, x: torch.Tensor, segmenter_features=None):
        if self.config.features == 'segmenter' and segmenter_features is not None:
            return segmenter_features
        return self.image_features.extract(x)

    def perceptual(self, features_input, features_synthesis, size_hw) -> torch.Tensor:
        """V normalised to [0, 1] by ``v_scale``."""
        raw = perceptual_difference(features_input, features_synthesis, size_hw)
        return normalise(raw, self.v_scale)

    def dissimilarity_inputs(self, x: torch.Tensor, semantic: Optional[torch.Tensor] = None
                             ) -> Dict[str, torch.Tensor]:
        """Everything the dissimilarity network takes, for images ``x``: the semantic map is
        the prediction, or ``semantic`` where it is not negative (a training sample's altered
        labels)."""
        logits, seg_features, prediction, entropy, distance = self.segment(x)
        labels = prediction if semantic is None else torch.where(semantic < 0, prediction,
                                                                 semantic)
        synthesis = self.synthesise(labels)
        features_input = self.features(x, seg_features)
        features_synthesis = self.image_features.extract(synthesis)
        raw_v = perceptual_difference(features_input, features_synthesis, x.shape[2:])
        return {'logits': logits, 'prediction': prediction, 'labels': labels,
                'synthesis': synthesis, 'features_input': features_input,
                'features_synthesis': features_synthesis, 'raw_v': raw_v,
                'maps': torch.stack([entropy, distance, normalise(raw_v, self.v_scale)], 1)}

    def dissimilarity_logit(self, parts: Dict[str, torch.Tensor]) -> torch.Tensor:
        semantic = one_hot(parts['labels'], self.num_inlier).to(parts['maps'].dtype)
        return self.dissimilarity(parts['features_input'], parts['features_synthesis'],
                                  semantic, parts['maps'])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = self.dissimilarity_inputs(x)
        if self.keep_synthesis:
            self.last_synthesis = parts['synthesis'].detach()
        logit = self.dissimilarity_logit(parts).float()
        return torch.cat([parts['logits'], logit, parts['maps'].float()], dim=1)
