"""ERFNet (Romera et al., IEEE T-ITS 2018; paper 000 section II.C).

Module and attribute names follow the public implementation exactly, so that the widely used
``erfnet_pretrained.pth`` (keys ``module.encoder.initial_block.conv.weight`` ...) loads unchanged.
"""
import torch
from torch import nn
import torch.nn.functional as F

from anomseg_ros.backbones.base import Backbone, PretrainedCfg
from anomseg_ros.backbones.registry import register_backbone


class DownsamplerBlock(nn.Module):
    """3x3 stride-2 convolution concatenated with 2x2 max pooling (ENet's initial block)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(torch.cat([self.conv(x), self.pool(x)], 1)))


class NonBottleneck1d(nn.Module):
    """Residual block of two factorised (3x1, 1x3) convolution pairs, the second one dilated."""

    def __init__(self, channels: int, dropout: float, dilation: int):
        super().__init__()
        self.conv3x1_1 = nn.Conv2d(channels, channels, (3, 1), padding=(1, 0))
        self.conv1x3_1 = nn.Conv2d(channels, channels, (1, 3), padding=(0, 1))
        self.bn1 = nn.BatchNorm2d(channels, eps=1e-3)
        self.conv3x1_2 = nn.Conv2d(channels, channels, (3, 1), padding=(dilation, 0),
                                   dilation=(dilation, 1))
        self.conv1x3_2 = nn.Conv2d(channels, channels, (1, 3), padding=(0, dilation),
                                   dilation=(1, dilation))
        self.bn2 = nn.BatchNorm2d(channels, eps=1e-3)
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv3x1_1(x))
        out = F.relu(self.bn1(self.conv1x3_1(out)))
        out = F.relu(self.conv3x1_2(out))
        out = self.bn2(self.conv1x3_2(out))
        if self.dropout.p != 0:
            out = self.dropout(out)
        return F.relu(out + x)


class Encoder(nn.Module):
    """Downsamplers to 1/8 resolution, 5 blocks at 64 channels, 8 dilated blocks at 128."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.initial_block = DownsamplerBlock(3, 16)
        layers = [DownsamplerBlock(16, 64)]
        layers += [NonBottleneck1d(64, 0.03, 1) for _ in range(5)]
        layers.append(DownsamplerBlock(64, 128))
        for _ in range(2):
            layers += [NonBottleneck1d(128, 0.3, d) for d in (2, 4, 8, 16)]
        self.layers = nn.ModuleList(layers)
        # Only used when the encoder is trained alone (ERFNet's first training stage).
        self.output_conv = nn.Conv2d(128, num_classes, 1)

    def forward(self, x: torch.Tensor, predict: bool = False) -> torch.Tensor:
        out = self.initial_block(x)
        for layer in self.layers:
            out = layer(out)
        return self.output_conv(out) if predict else out


class UpsamplerBlock(nn.Module):
    """3x3 stride-2 transposed convolution, batch norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1,
                                       output_padding=1)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class Decoder(nn.Module):
    """Two upsamplers with two non-bottleneck-1D blocks each, then a 2x2 transposed conv."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.layers = nn.ModuleList([
            UpsamplerBlock(128, 64), NonBottleneck1d(64, 0, 1), NonBottleneck1d(64, 0, 1),
            UpsamplerBlock(64, 16), NonBottleneck1d(16, 0, 1), NonBottleneck1d(16, 0, 1),
        ])
        self.output_conv = nn.ConvTranspose2d(16, num_classes, 2, stride=2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_conv(self.forward_features(x))


@register_backbone('erfnet')
class ERFNet(Backbone):
    """ERFNet: ``(B,3,H,W)`` float to logits ``(B,C,H,W)``; H and W multiples of 8."""

    classifier_key, classifier_axis = 'decoder.output_conv.weight', 1
    last_block = ('decoder.',)
    has_features = True
    feature_layers = ('encoder.initial_block', 'encoder.layers.5', 'encoder.layers.14')
    input_multiple = 8
    pretrained_cfg = PretrainedCfg()  # the public Cityscapes ERFNet's: RGB in [0, 1], 1024x512

    def __init__(self, num_classes: int = 20):
        super().__init__(num_classes)
        self.encoder = Encoder(num_classes)
        self.decoder = Decoder(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder features (16 channels at half resolution) before the classifier."""
        return self.decoder.forward_features(self.encoder(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.decoder.output_conv(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
