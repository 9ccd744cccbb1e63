"""SynBoost's networks (paper 002 section 3.1, Figs. 2-3): the feature extractor of the
perceptual difference, the label-to-image generator and the dissimilarity network.

- ``FeatureExtractor``: the outputs of a few layers of a frozen network. The paper uses an
  ImageNet VGG; here it is the segmentation model's own encoder by default (the layers its
  backbone declares in ``feature_layers``), or a torchvision ``vgg16`` from a state dict
  file (``relu1_2``, ``relu2_2``, ``relu3_3``, ``relu4_3``) for a user who has the weights.
- ``Generator``: one-hot semantic map in, RGB out, SPADE residual blocks (Park et al., the
  generator of the paper's "Ours Light") from 1/8 resolution up; trained with L1 and a
  feature-matching (perceptual) loss.
- ``DissimilarityNet``: per feature level, the input's and the synthesis's features and a
  semantic encoding concatenated and fused by a 1x1 convolution, multiplied point-wise by an
  encoding of the uncertainty maps (the attention of Fig. 3); a decoder from the deepest level
  up whose normalisation is SPADE on the semantic map; one logit per pixel.
"""
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn
import torch.nn.functional as F

from anomseg_ros.errors import ConfigError, first_line

VGG16_LAYERS = ('3', '8', '15', '22')   # relu1_2, relu2_2, relu3_3, relu4_3 of vgg16.features
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class _Enough(Exception):
    """Raised by the last hook: the layers after it are not needed."""


class FeatureExtractor:
    """The outputs of ``layers`` (module names of ``network``) for an input batch, in order.

    Not a module of its own: ``network`` belongs to whoever owns it (the SynBoost model), so
    its weights are saved once. ``extract(x)`` stops the forward pass after the last layer;
    ``extract(x, full=True)`` also returns the network's own output (the segmentation logits,
    when ``network`` is the segmenter), so one pass serves both. ``to_input`` converts the
    pipeline's normalised images into what ``network`` expects.
    """

    def __init__(self, network: nn.Module, layers: Sequence[str], *,
                 to_input: Optional[nn.Module] = None):
        modules = dict(network.named_modules())
        missing = [name for name in layers if name not in modules]
        if missing:
            raise ConfigError(f'{type(network).__name__} has no layers {", ".join(missing)} '
                              f'to take features from')
        self.network = network
        self.layers = tuple(layers)
        self.to_input = to_input or nn.Identity()
        self._captured: List[torch.Tensor] = []
        self._active = self._stop = False  # captures only inside extract()
        for index, name in enumerate(self.layers):
            modules[name].register_forward_hook(self._hook(index == len(self.layers) - 1))

    def _hook(self, last: bool):
        def hook(module, inputs, output):
            if not self._active:
                return
            self._captured.append(output)
            if last and self._stop:
                raise _Enough
        return hook

    def extract(self, x: torch.Tensor, *, full: bool = False):
        self._captured, self._stop, self._active = [], not full, True
        try:
            output = self.network(self.to_input(x))
        except _Enough:
            output = None
        finally:
            self._active = False
        features, self._captured = self._captured, []
        return (output, features) if full else features

    def channels(self, size_hw: Tuple[int, int] = (64, 64)) -> List[Tuple[int, int]]:
        """``(channels, stride)`` of each layer's output."""
        was_training = self.network.training
        self.network.eval()  # no batch-norm statistics from a blank image
        with torch.no_grad():
            features = self.extract(torch.zeros(1, 3, *size_hw))
        self.network.train(was_training)
        return [(f.shape[1], size_hw[0] // f.shape[2]) for f in features]


class ImageNetInput(nn.Module):
    """The pipeline's normalised image (``mean`` / ``std`` of the segmentation model) to
    ImageNet normalisation, for VGG."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer('mean', torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('imagenet_mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer('imagenet_std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = x * self.std + self.mean
        return (rgb - self.imagenet_mean) / self.imagenet_std


def vgg16_features(path: Optional[str] = None) -> nn.Module:
    """torchvision's ``vgg16().features`` up to ``relu4_3``, with the weights of the state dict
    at ``path`` (torchvision's ``vgg16-397923af.pth`` or any ``vgg16`` state dict); ``None``
    leaves it untrained (for building a checkpoint's model before its weights are loaded)."""
    from torchvision.models import vgg16
    model = vgg16()
    if path is not None:
        try:
            state = torch.load(path, map_location='cpu', weights_only=True)
            state = state.get('state_dict', state) if isinstance(state, dict) else state
            model.load_state_dict(state)
        except FileNotFoundError:
            raise ConfigError(f'VGG-16 weights {path!r} do not exist') from None
        except Exception as exc:  # a corrupt file, or another network's state dict
            raise ConfigError(f'{path!r} is not a torchvision vgg16 state dict '
                              f'({type(exc).__name__}: {first_line(exc, limit=160)})') from None
    features = model.features[:int(VGG16_LAYERS[-1]) + 1]
    for parameter in features.parameters():
        parameter.requires_grad_(False)
    return features


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(B,H,W)`` trainIds (255 = void) to ``(B,num_classes+1,H,W)`` float, void last."""
    labels = labels.long().masked_fill(labels.long() >= num_classes, num_classes)
    return F.one_hot(labels, num_classes + 1).permute(0, 3, 1, 2).float()


class SpadeNorm(nn.Module):
    """Batch norm without its own affine terms, modulated per pixel by a scale and shift
    computed from the semantic map (SPADE)."""

    def __init__(self, channels: int, label_channels: int, hidden: int = 32):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(label_channels, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        semantic = F.interpolate(semantic, size=x.shape[2:], mode='nearest')
        hidden = self.shared(semantic)
        return self.norm(x) * (1 + self.gamma(hidden)) + self.beta(hidden)


class SpadeResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, label_channels: int):
        super().__init__()
        middle = min(in_channels, out_channels)
        self.norm0 = SpadeNorm(in_channels, label_channels)
        self.conv0 = nn.Conv2d(in_channels, middle, 3, padding=1)
        self.norm1 = SpadeNorm(middle, label_channels)
        self.conv1 = nn.Conv2d(middle, out_channels, 3, padding=1)
        self.shortcut = (nn.Conv2d(in_channels, out_channels, 1, bias=False)
                         if in_channels != out_channels else nn.Identity())

    def forward(self, x: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        out = self.conv0(F.leaky_relu(self.norm0(x, semantic), 0.2))
        out = self.conv1(F.leaky_relu(self.norm1(out, semantic), 0.2))
        return self.shortcut(x) + out


class Generator(nn.Module):
    """One-hot semantic map ``(B,K,H,W)`` to an image normalised as the segmentation model's
    input (``mean`` / ``std``). Starts from the map at 1/8 resolution with ``4c`` channels and
    doubles the resolution three times (``4c, 2c, c, c/2``; ``c = channels``)."""

    def __init__(self, label_channels: int, *, channels: int = 32,
                 mean: Sequence[float] = (0.0, 0.0, 0.0), std: Sequence[float] = (1.0, 1.0, 1.0)):
        super().__init__()
        widths = [4 * channels, 2 * channels, channels, max(channels // 2, 8)]
        self.head = nn.Conv2d(label_channels, widths[0], 3, padding=1)
        self.blocks = nn.ModuleList(SpadeResBlock(a, b, label_channels)
                                    for a, b in zip(widths, widths[1:] + widths[-1:]))
        self.to_rgb = nn.Conv2d(widths[-1], 3, 3, padding=1)
        self.register_buffer('mean', torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, semantic: torch.Tensor) -> torch.Tensor:
        height, width = semantic.shape[2:]
        x = self.head(F.interpolate(semantic, size=(height // 8, width // 8), mode='area'))
        for index, block in enumerate(self.blocks):
            x = block(x, semantic)
            if index < len(self.blocks) - 1:
                x = F.interpolate(x, scale_factor=2.0, mode='nearest')
        x = F.interpolate(x, size=(height, width), mode='nearest') if x.shape[2:] != (
            height, width) else x
        rgb = torch.sigmoid(self.to_rgb(F.leaky_relu(x, 0.2)).float())
        return (rgb - self.mean) / self.std


def _conv_selu(in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1):
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, stride=stride,
                                   padding=kernel // 2), nn.SELU())


class _MapEncoder(nn.Module):
    """A small CNN on a stack of maps (the semantic map, or the uncertainty maps): at each
    feature level, the maps pooled to its size and two convolutions."""

    def __init__(self, in_channels: int, widths: Sequence[int]):
        super().__init__()
        self.levels = nn.ModuleList(
            nn.Sequential(_conv_selu(in_channels, width), _conv_selu(width, width))
            for width in widths)

    def forward(self, maps: torch.Tensor, sizes: Sequence[Tuple[int, int]]) -> List[torch.Tensor]:
        return [level(F.adaptive_avg_pool2d(maps, size))
                for level, size in zip(self.levels, sizes)]


class DissimilarityNet(nn.Module):
    """Fig. 3: encoders, fusion with uncertainty attention, SPADE decoder; logits ``(B,1,H,W)``.

    ``feature_channels`` are the channels of the image feature levels (shallow to deep);
    ``uncertainty=False`` is the ablation without the uncertainty maps (fusion alone)."""

    def __init__(self, feature_channels: Sequence[int], label_channels: int, *,
                 width: int = 32, uncertainty: bool = True, num_maps: int = 3):
        super().__init__()
        levels = len(feature_channels)
        self.fused_widths = [min(width * 2 ** i, 128) for i in range(levels)]
        semantic_widths = [max(w // 2, 8) for w in self.fused_widths]
        self.semantic_encoder = _MapEncoder(label_channels, semantic_widths)
        self.uncertainty_encoder = (_MapEncoder(num_maps, self.fused_widths)
                                    if uncertainty else None)
        self.fuse = nn.ModuleList(
            nn.Conv2d(2 * c + s, w, 1)
            for c, s, w in zip(feature_channels, semantic_widths, self.fused_widths))
        self.decode = nn.ModuleList()
        self.norms = nn.ModuleList()
        for i in reversed(range(levels)):
            in_channels = self.fused_widths[i] + (self.fused_widths[i + 1] if i + 1 < levels
                                                  else 0)
            self.decode.append(nn.Conv2d(in_channels, self.fused_widths[i], 3, padding=1))
            self.norms.append(SpadeNorm(self.fused_widths[i], label_channels))
        self.classifier = nn.Conv2d(self.fused_widths[0], 1, 1)

    def forward(self, features_input: Sequence[torch.Tensor],
                features_synthesis: Sequence[torch.Tensor], semantic: torch.Tensor,
                maps: Optional[torch.Tensor]) -> torch.Tensor:
        sizes = [f.shape[2:] for f in features_input]
        semantic_codes = self.semantic_encoder(semantic, sizes)
        fused = [conv(torch.cat([a, b, s], dim=1)) for conv, a, b, s in
                 zip(self.fuse, features_input, features_synthesis, semantic_codes)]
        if self.uncertainty_encoder is not None:
            attention = self.uncertainty_encoder(maps, sizes)
            fused = [f * u for f, u in zip(fused, attention)]
        x = None
        for step, i in enumerate(reversed(range(len(fused)))):
            if x is not None:
                x = F.interpolate(x, size=fused[i].shape[2:], mode='bilinear',
                                  align_corners=False)
                x = torch.cat([fused[i], x], dim=1)
            else:
                x = fused[i]
            x = F.selu(self.norms[step](self.decode[step](x), semantic))
        x = self.classifier(x)
        return F.interpolate(x, size=semantic.shape[2:], mode='bilinear', align_corners=False)
