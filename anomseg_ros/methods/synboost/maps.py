"""SynBoost's per-pixel maps (paper 002 section 3.1): softmax entropy H (eq. 1), softmax
distance D (eq. 2) and perceptual difference V (eq. 3), each in [0, 1]."""
import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F


def uncertainty_maps(inlier_logits: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``H`` and ``D`` ``(B,H,W)`` from the inlier logits ``(B,C,H,W)``.

    - ``H = -sum_c p(c) log2 p(c)`` (eq. 1), divided by ``log2 C`` (its value for a uniform
      ``p``), so it spans [0, 1];
    - ``D = 1 - max_c p(c) + max_{c' != argmax} p(c')`` (eq. 2): 0 for a one-hot ``p``, 1
      when the two best classes tie; it lies in [0, 1] as it is.
    """
    logits = inlier_logits.float()
    log_p = F.log_softmax(logits, dim=1)
    p = log_p.exp()
    entropy = -(p * log_p).sum(dim=1) / math.log(logits.shape[1])  # log2 / log2 C = ln / ln C
    top2 = p.topk(2, dim=1).values
    distance = 1.0 - top2[:, 0] + top2[:, 1]
    return entropy.clamp(0.0, 1.0), distance.clamp(0.0, 1.0)


def perceptual_difference(features_a: Sequence[torch.Tensor], features_b: Sequence[torch.Tensor],
                          size_hw: Tuple[int, int]) -> torch.Tensor:
    """Eq. 3 per pixel, unnormalised: ``sum_i mean_c |F_i(x) - F_i(r)|`` over the layers ``i``,
    each layer's map brought to ``size_hw`` bilinearly; ``(B,H,W)``.

    The paper divides layer ``i``'s L1 distance by its number of elements ``M_i``; per pixel
    those are its ``C_i`` channels, hence the mean over channels (layers with more channels
    do not outweigh the others)."""
    total = None
    for a, b in zip(features_a, features_b):
        distance = (a.float() - b.float()).abs().mean(dim=1, keepdim=True)
        if distance.shape[2:] != tuple(size_hw):
            distance = F.interpolate(distance, size=size_hw, mode='bilinear',
                                     align_corners=False)
        total = distance if total is None else total + distance
    return total[:, 0]


def normalise(values: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``values / scale`` clamped to [0, 1]: the fixed normalisation of V (``scale`` is a high
    quantile of V on the training images, kept in the checkpoint), the same for every frame so
    that scores compare across images."""
    return (values / scale.clamp_min(1e-12)).clamp(0.0, 1.0)
