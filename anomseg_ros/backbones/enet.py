"""ENet (Paszke et al., arXiv:1606.02147; paper 000 Table 1 and Fig. 2).

Stages as in Table 1: an initial block to 1/2, bottleneck stage 1 (downsampling to 1/4, four
regular), stages 2 and 3 at 1/8 (regular, dilated 2/4/8/16 and asymmetric 5x5), a decoder of
two upsampling stages with max unpooling, and a full (transposed) convolution to the classes.
PReLU in the encoder and ReLU in the decoder, no biases in the projections, spatial dropout
0.01 in stage 1 and 0.1 after, as the paper says. Module names follow the widely used PyTorch
port (davidtvs/PyTorch-ENet), 0.35 M parameters at 19 classes.
"""
import torch
from torch import nn
import torch.nn.functional as F

from anomseg_ros.backbones.base import Backbone
from anomseg_ros.backbones.registry import register_backbone


def _activation(relu: bool) -> nn.Module:
    return nn.ReLU() if relu else nn.PReLU()


class InitialBlock(nn.Module):
    """A 3x3 stride-2 convolution with 13 filters next to 2x2 max pooling: 16 maps (Fig. 2a)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 16, relu: bool = False):
        super().__init__()
        self.main_branch = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2,
                                     padding=1, bias=False)
        self.ext_branch = nn.MaxPool2d(3, stride=2, padding=1)
        self.batch_norm = nn.BatchNorm2d(out_channels)
        self.out_activation = _activation(relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([self.main_branch(x), self.ext_branch(x)], 1)
        return self.out_activation(self.batch_norm(out))


def _conv_bn_act(in_channels, out_channels, kernel, *, stride=1, padding=0, dilation=1,
                 relu=False) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, stride=stride,
                                   padding=padding, dilation=dilation, bias=False),
                         nn.BatchNorm2d(out_channels), _activation(relu))


class RegularBottleneck(nn.Module):
    """1x1 projection, a regular / dilated / asymmetric (5x1 then 1x5) convolution, 1x1
    expansion, spatial dropout, added to the identity (Fig. 2b)."""

    def __init__(self, channels: int, *, internal_ratio: int = 4, kernel_size: int = 3,
                 padding: int = 1, dilation: int = 1, asymmetric: bool = False,
                 dropout_prob: float = 0.0, relu: bool = False):
        super().__init__()
        internal = channels // internal_ratio
        self.ext_conv1 = _conv_bn_act(channels, internal, 1, relu=relu)
        if asymmetric:
            self.ext_conv2 = nn.Sequential(
                nn.Conv2d(internal, internal, (kernel_size, 1), padding=(padding, 0),
                          dilation=dilation, bias=False),
                nn.BatchNorm2d(internal), _activation(relu),
                nn.Conv2d(internal, internal, (1, kernel_size), padding=(0, padding),
                          dilation=dilation, bias=False),
                nn.BatchNorm2d(internal), _activation(relu))
        else:
            self.ext_conv2 = _conv_bn_act(internal, internal, kernel_size, padding=padding,
                                          dilation=dilation, relu=relu)
        self.ext_conv3 = _conv_bn_act(internal, channels, 1, relu=relu)
        self.ext_regul = nn.Dropout2d(p=dropout_prob)
        self.out_activation = _activation(relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ext = self.ext_regul(self.ext_conv3(self.ext_conv2(self.ext_conv1(x))))
        return self.out_activation(x + ext)


class DownsamplingBottleneck(nn.Module):
    """Max pooling (keeping the indices) on the main branch, zero-padded to the new width; the
    extension starts with a 2x2 stride-2 convolution."""

    def __init__(self, in_channels: int, out_channels: int, *, internal_ratio: int = 4,
                 dropout_prob: float = 0.0, relu: bool = False):
        super().__init__()
        internal = in_channels // internal_ratio
        self.main_max1 = nn.MaxPool2d(2, stride=2, return_indices=True)
        self.ext_conv1 = _conv_bn_act(in_channels, internal, 2, stride=2, relu=relu)
        self.ext_conv2 = _conv_bn_act(internal, internal, 3, padding=1, relu=relu)
        self.ext_conv3 = _conv_bn_act(internal, out_channels, 1, relu=relu)
        self.ext_regul = nn.Dropout2d(p=dropout_prob)
        self.out_activation = _activation(relu)

    def forward(self, x: torch.Tensor):
        main, indices = self.main_max1(x)
        ext = self.ext_regul(self.ext_conv3(self.ext_conv2(self.ext_conv1(x))))
        main = F.pad(main, (0, 0, 0, 0, 0, ext.shape[1] - main.shape[1]))
        return self.out_activation(main + ext), indices


class UpsamplingBottleneck(nn.Module):
    """Max unpooling with the indices of the matching downsampling on the main branch; a 2x2
    transposed convolution in the extension."""

    def __init__(self, in_channels: int, out_channels: int, *, internal_ratio: int = 4,
                 dropout_prob: float = 0.0, relu: bool = True):
        super().__init__()
        internal = in_channels // internal_ratio
        self.main_conv1 = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                        nn.BatchNorm2d(out_channels))
        self.main_unpool1 = nn.MaxUnpool2d(2)
        self.ext_conv1 = _conv_bn_act(in_channels, internal, 1, relu=relu)
        self.ext_tconv1 = nn.ConvTranspose2d(internal, internal, 2, stride=2, bias=False)
        self.ext_tconv1_bnorm = nn.BatchNorm2d(internal)
        self.ext_tconv1_activation = _activation(relu)
        self.ext_conv2 = _conv_bn_act(internal, out_channels, 1, relu=relu)
        self.ext_regul = nn.Dropout2d(p=dropout_prob)
        self.out_activation = _activation(relu)

    def forward(self, x: torch.Tensor, indices: torch.Tensor, output_size) -> torch.Tensor:
        main = self.main_unpool1(self.main_conv1(x), indices, output_size=output_size)
        ext = self.ext_tconv1(self.ext_conv1(x), output_size=output_size)
        ext = self.ext_tconv1_activation(self.ext_tconv1_bnorm(ext))
        ext = self.ext_regul(self.ext_conv2(ext))
        return self.out_activation(main + ext)


def _stage_2_or_3(prefix: str, dropout: float) -> dict:
    """The eight blocks of stage 2 after its downsampling (stage 3 repeats them)."""
    def regular(**kwargs):
        return RegularBottleneck(128, dropout_prob=dropout, **kwargs)
    return {
        f'regular{prefix}_1': regular(padding=1),
        f'dilated{prefix}_2': regular(dilation=2, padding=2),
        f'asymmetric{prefix}_3': regular(kernel_size=5, padding=2, asymmetric=True),
        f'dilated{prefix}_4': regular(dilation=4, padding=4),
        f'regular{prefix}_5': regular(padding=1),
        f'dilated{prefix}_6': regular(dilation=8, padding=8),
        f'asymmetric{prefix}_7': regular(kernel_size=5, padding=2, asymmetric=True),
        f'dilated{prefix}_8': regular(dilation=16, padding=16),
    }


@register_backbone('enet')
class ENet(Backbone):
    """ENet: ``(B,3,H,W)`` float to logits ``(B,C,H,W)``, any H and W (max-unpooling restores
    each resolution's own size)."""

    classifier_key, classifier_axis = 'transposed_conv.weight', 1
    last_block = ('upsample5_0.', 'regular5_1.', 'transposed_conv.')
    has_features = True
    feature_layers = ('initial_block', 'regular1_4', 'downsample2_0')

    def __init__(self, num_classes: int = 20):
        super().__init__(num_classes)
        self.initial_block = InitialBlock(3, 16)
        self.downsample1_0 = DownsamplingBottleneck(16, 64, dropout_prob=0.01)
        for i in range(1, 5):
            self.add_module(f'regular1_{i}', RegularBottleneck(64, padding=1, dropout_prob=0.01))
        self.downsample2_0 = DownsamplingBottleneck(64, 128, dropout_prob=0.1)
        middle = {**_stage_2_or_3('2', 0.1), **_stage_2_or_3('3', 0.1)}
        for name, block in middle.items():
            self.add_module(name, block)
        self._middle = list(middle)  # block names, in order
        self.upsample4_0 = UpsamplingBottleneck(128, 64, dropout_prob=0.1)
        self.regular4_1 = RegularBottleneck(64, padding=1, dropout_prob=0.1, relu=True)
        self.regular4_2 = RegularBottleneck(64, padding=1, dropout_prob=0.1, relu=True)
        self.upsample5_0 = UpsamplingBottleneck(64, 16, dropout_prob=0.1)
        self.regular5_1 = RegularBottleneck(16, padding=1, dropout_prob=0.1, relu=True)
        self.transposed_conv = nn.ConvTranspose2d(16, num_classes, 3, stride=2, padding=1,
                                                  bias=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder features (16 channels at half resolution) before the full convolution."""
        x = self.initial_block(x)
        size1 = x.shape[2:]
        x, indices1 = self.downsample1_0(x)
        for i in range(1, 5):
            x = getattr(self, f'regular1_{i}')(x)
        size2 = x.shape[2:]
        x, indices2 = self.downsample2_0(x)
        for name in self._middle:
            x = getattr(self, name)(x)
        x = self.upsample4_0(x, indices2, output_size=size2)
        x = self.regular4_2(self.regular4_1(x))
        x = self.upsample5_0(x, indices1, output_size=size1)
        return self.regular5_1(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        size = (2 * features.shape[2], 2 * features.shape[3])
        return self.transposed_conv(features, output_size=size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
