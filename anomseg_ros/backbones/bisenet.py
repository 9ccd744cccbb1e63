"""BiSeNet V1 (Yu et al., ECCV 2018; paper 000 section II.B) and V2 (Yu et al., IJCV 2021).

Layer names and widths follow the common PyTorch implementation (CoinCheung/BiSeNet). V1's
context path is torchvision's ResNet-18 (the BiSeNet paper's larger variant; its Xception39 has
no well-kept implementation), and its spatial path is the paper's three stride-2 convolutions.
Upsampling is to the size of the map it meets rather than by fixed factors, so any input size
works (multiples of 32 keep every stage exact).

In training mode both return ``(logits, aux_1, ...)``: the auxiliary (V1) or booster (V2)
heads, each upsampled to the input, that the training loss adds with weight alpha (paper 000
eq. 5). In eval mode they return the logits alone.
"""
from typing import Tuple, Union

import torch
from torch import nn
import torch.nn.functional as F

from anomseg_ros.backbones.base import Backbone
from anomseg_ros.backbones.registry import register_backbone


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=False)


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, padding: int = 1, groups: int = 1):
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                                   groups=groups, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class SegmentHead(nn.Module):
    """3x3 ConvBNReLU, dropout, 1x1 convolution to the classes, bilinear upsampling."""

    def __init__(self, in_channels: int, mid_channels: int, num_classes: int,
                 dropout: float = 0.1):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, mid_channels, 3)
        self.drop = nn.Dropout(dropout)
        self.conv_out = nn.Conv2d(mid_channels, num_classes, 1)

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        return _resize(self.conv_out(self.drop(self.conv(x))), size)


Output = Union[torch.Tensor, Tuple[torch.Tensor, ...]]


# ----------------------------------------------------------------------------- BiSeNet V1

class AttentionRefinementModule(nn.Module):
    """Global average pooling to an attention vector that reweights the stage's features."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, out_channels, 3)
        self.conv_atten = nn.Conv2d(out_channels, out_channels, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        atten = self.bn_atten(self.conv_atten(feat.mean(dim=(2, 3), keepdim=True)))
        return feat * torch.sigmoid(atten)


class ContextPath(nn.Module):
    """ResNet-18 to 1/32 with ARMs at 1/16 and 1/32 and the global context added on top."""

    def __init__(self):
        super().__init__()
        # imported here: torchvision's import pulls in torch._dynamo (about 2 s), which
        # every start of the node paid for backbones it did not build
        from torchvision.models import resnet18
        resnet = resnet18(weights=None)
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.layer1, self.layer2 = resnet.layer1, resnet.layer2
        self.layer3, self.layer4 = resnet.layer3, resnet.layer4
        self.arm16 = AttentionRefinementModule(256, 128)
        self.arm32 = AttentionRefinementModule(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128, 3)
        self.conv_head16 = ConvBNReLU(128, 128, 3)
        self.conv_avg = ConvBNReLU(512, 128, 1, padding=0)

    def forward(self, x: torch.Tensor):
        feat8 = self.layer2(self.layer1(self.stem(x)))
        feat16 = self.layer3(feat8)
        feat32 = self.layer4(feat16)
        context = self.conv_avg(feat32.mean(dim=(2, 3), keepdim=True))
        up32 = self.conv_head32(F.interpolate(self.arm32(feat32) + context,
                                              size=feat16.shape[2:], mode='nearest'))
        up16 = self.conv_head16(F.interpolate(self.arm16(feat16) + up32,
                                              size=feat8.shape[2:], mode='nearest'))
        return up16, up32  # at 1/8 and 1/16


class SpatialPath(nn.Module):
    """Three stride-2 ConvBNReLU layers to 1/8 and a 1x1 projection to 128 channels."""

    def __init__(self):
        super().__init__()
        self.conv1 = ConvBNReLU(3, 64, 7, stride=2, padding=3)
        self.conv2 = ConvBNReLU(64, 64, 3, stride=2)
        self.conv3 = ConvBNReLU(64, 64, 3, stride=2)
        self.conv_out = ConvBNReLU(64, 128, 1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv3(self.conv2(self.conv1(x))))


class FeatureFusionModule(nn.Module):
    """Concatenation, ConvBNReLU, and an SE-like channel attention added back to the features."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.convblk = ConvBNReLU(in_channels, out_channels, 1, padding=0)
        self.conv = nn.Conv2d(out_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        atten = torch.sigmoid(self.bn(self.conv(feat.mean(dim=(2, 3), keepdim=True))))
        return feat * atten + feat


@register_backbone('bisenetv1')
class BiSeNetV1(Backbone):
    """BiSeNet V1 with a ResNet-18 context path; two auxiliary heads on the context path."""

    classifier_key, classifier_axis = 'conv_out.conv_out.weight', 0
    last_block = ('ffm.', 'conv_out.')
    feature_layers = ('sp.conv1', 'sp.conv2', 'sp.conv3')
    aux_weight = 1.0  # alpha of paper 000 eq. 5, as in the BiSeNet paper

    def __init__(self, num_classes: int = 19):
        super().__init__(num_classes)
        self.cp = ContextPath()
        self.sp = SpatialPath()
        self.ffm = FeatureFusionModule(256, 256)
        self.conv_out = SegmentHead(256, 256, num_classes)
        self.conv_out16 = SegmentHead(128, 64, num_classes)
        self.conv_out32 = SegmentHead(128, 64, num_classes)

    def forward(self, x: torch.Tensor) -> Output:
        size = x.shape[2:]
        context8, context16 = self.cp(x)
        logits = self.conv_out(self.ffm(self.sp(x), context8), size)
        if not self.training:
            return logits
        return logits, self.conv_out16(context8, size), self.conv_out32(context16, size)


# ----------------------------------------------------------------------------- BiSeNet V2

class DetailBranch(nn.Module):
    """Wide and shallow: three stages of plain 3x3 ConvBNReLU to 1/8 at 128 channels."""

    def __init__(self):
        super().__init__()
        self.S1 = nn.Sequential(ConvBNReLU(3, 64, stride=2), ConvBNReLU(64, 64))
        self.S2 = nn.Sequential(ConvBNReLU(64, 64, stride=2), ConvBNReLU(64, 64),
                                ConvBNReLU(64, 64))
        self.S3 = nn.Sequential(ConvBNReLU(64, 128, stride=2), ConvBNReLU(128, 128),
                                ConvBNReLU(128, 128))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.S3(self.S2(self.S1(x)))


class StemBlock(nn.Module):
    """To 1/4: a strided convolution branch next to max pooling, fused by a 3x3 conv."""

    def __init__(self):
        super().__init__()
        self.conv = ConvBNReLU(3, 16, stride=2)
        self.left = nn.Sequential(ConvBNReLU(16, 8, 1, padding=0), ConvBNReLU(8, 16, stride=2))
        self.right = nn.MaxPool2d(3, stride=2, padding=1)
        self.fuse = ConvBNReLU(32, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        return self.fuse(torch.cat([self.left(feat), self.right(feat)], dim=1))


class ContextEmbeddingBlock(nn.Module):
    """Global average pooling added back to the features (the CE block)."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(128)
        self.conv_gap = ConvBNReLU(128, 128, 1, padding=0)
        self.conv_last = ConvBNReLU(128, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_gap(self.bn(x.mean(dim=(2, 3), keepdim=True)))
        return self.conv_last(feat + x)


class GatherExpandS1(nn.Module):
    """Gather-and-expand layer, stride 1: 3x3 conv, depth-wise expansion x6, 1x1 projection."""

    def __init__(self, in_channels: int, out_channels: int, exp_ratio: int = 6):
        super().__init__()
        mid = in_channels * exp_ratio
        self.conv1 = ConvBNReLU(in_channels, in_channels)
        self.dwconv = ConvBNReLU(in_channels, mid, groups=in_channels)
        self.conv2 = nn.Sequential(nn.Conv2d(mid, out_channels, 1, bias=False),
                                   nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.dwconv(self.conv1(x))) + x)


class GatherExpandS2(nn.Module):
    """Gather-and-expand layer, stride 2, with a depth-wise separable shortcut."""

    def __init__(self, in_channels: int, out_channels: int, exp_ratio: int = 6):
        super().__init__()
        mid = in_channels * exp_ratio
        self.conv1 = ConvBNReLU(in_channels, in_channels)
        self.dwconv1 = nn.Sequential(
            nn.Conv2d(in_channels, mid, 3, stride=2, padding=1, groups=in_channels, bias=False),
            nn.BatchNorm2d(mid))
        self.dwconv2 = ConvBNReLU(mid, mid, groups=mid)
        self.conv2 = nn.Sequential(nn.Conv2d(mid, out_channels, 1, bias=False),
                                   nn.BatchNorm2d(out_channels))
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, stride=2, padding=1, groups=in_channels,
                      bias=False),
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv2(self.dwconv2(self.dwconv1(self.conv1(x))))
        return F.relu(feat + self.shortcut(x))


class SegmentBranch(nn.Module):
    """Narrow and deep: stem to 1/4, gather-and-expand stages to 1/32, context embedding."""

    def __init__(self):
        super().__init__()
        self.S1S2 = StemBlock()
        self.S3 = nn.Sequential(GatherExpandS2(16, 32), GatherExpandS1(32, 32))
        self.S4 = nn.Sequential(GatherExpandS2(32, 64), GatherExpandS1(64, 64))
        self.S5_4 = nn.Sequential(GatherExpandS2(64, 128), GatherExpandS1(128, 128),
                                  GatherExpandS1(128, 128), GatherExpandS1(128, 128))
        self.S5_5 = ContextEmbeddingBlock()

    def forward(self, x: torch.Tensor):
        feat2 = self.S1S2(x)
        feat3 = self.S3(feat2)
        feat4 = self.S4(feat3)
        feat5_4 = self.S5_4(feat4)
        return feat2, feat3, feat4, feat5_4, self.S5_5(feat5_4)


class BilateralGuidedAggregation(nn.Module):
    """Each branch gates the other (the BGA layer) before a 3x3 fusion at 1/8."""

    def __init__(self):
        super().__init__()
        self.left1 = nn.Sequential(
            nn.Conv2d(128, 128, 3, padding=1, groups=128, bias=False), nn.BatchNorm2d(128),
            nn.Conv2d(128, 128, 1, bias=False))
        self.left2 = nn.Sequential(
            nn.Conv2d(128, 128, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(128),
            nn.AvgPool2d(3, stride=2, padding=1))
        self.right1 = nn.Sequential(nn.Conv2d(128, 128, 3, padding=1, bias=False),
                                    nn.BatchNorm2d(128))
        self.right2 = nn.Sequential(
            nn.Conv2d(128, 128, 3, padding=1, groups=128, bias=False), nn.BatchNorm2d(128),
            nn.Conv2d(128, 128, 1, bias=False))
        self.conv = ConvBNReLU(128, 128)

    def forward(self, detail: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        size = detail.shape[2:]
        left = self.left1(detail) * torch.sigmoid(_resize(self.right1(semantic), size))
        right = self.left2(detail) * torch.sigmoid(self.right2(semantic))
        return self.conv(left + _resize(right, size))


@register_backbone('bisenetv2')
class BiSeNetV2(Backbone):
    """BiSeNet V2; four booster heads on the semantic branch in training."""

    classifier_key, classifier_axis = 'head.conv_out.weight', 0
    last_block = ('bga.', 'head.')
    feature_layers = ('detail.S1', 'detail.S2', 'detail.S3')
    aux_weight = 1.0  # the booster losses' weight in the BiSeNet V2 paper

    def __init__(self, num_classes: int = 19):
        super().__init__(num_classes)
        self.detail = DetailBranch()
        self.segment = SegmentBranch()
        self.bga = BilateralGuidedAggregation()
        self.head = SegmentHead(128, 1024, num_classes)
        self.aux2 = SegmentHead(16, 128, num_classes)
        self.aux3 = SegmentHead(32, 128, num_classes)
        self.aux4 = SegmentHead(64, 128, num_classes)
        self.aux5_4 = SegmentHead(128, 128, num_classes)

    def forward(self, x: torch.Tensor) -> Output:
        size = x.shape[2:]
        feat2, feat3, feat4, feat5_4, semantic = self.segment(x)
        logits = self.head(self.bga(self.detail(x), semantic), size)
        if not self.training:
            return logits
        return (logits, self.aux2(feat2, size), self.aux3(feat3, size), self.aux4(feat4, size),
                self.aux5_4(feat5_4, size))


AUX_HEAD_PREFIXES = ('conv_out16.', 'conv_out32.', 'aux2.', 'aux3.', 'aux4.', 'aux5_4.')
