"""Training loss: cross-entropy over trainIds, optionally class-balanced as ENet / ERFNet."""
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from anomseg_ros.errors import ConfigError
from anomseg_ros.labels import VOID_LABEL

# ERFNet's constant c in w = 1 / ln(c + p); see enet_class_weights.
ERFNET_WEIGHT_C = 1.10


def label_histogram(labels: Iterable[np.ndarray], num_classes: int) -> np.ndarray:
    """Pixel counts ``(num_classes + 1,)`` int64 over ``labels``: one per class, then the count
    of every other pixel (ignored, 255, or out of range)."""
    counts = np.zeros(num_classes + 1, np.int64)
    for label in labels:
        values = np.minimum(np.asarray(label).ravel().astype(np.int64), num_classes)
        counts += np.bincount(values, minlength=num_classes + 1)
    return counts


def enet_class_weights(histogram: Sequence[int], num_classes: int, *,
                       c: float = ERFNET_WEIGHT_C) -> torch.Tensor:
    """ENet's class balancing ``w_k = 1 / ln(c + p_k)`` as float32 ``(num_classes,)``.

    ``histogram`` is ``label_histogram``'s output; ``p_k`` is class ``k``'s share of all the
    pixels counted, ignored pixels included (as ENet's Torch code, where "unlabeled" is a class
    of the histogram). Paszke et al., "ENet" (arXiv:1606.02147, section 4) use ``c = 1.02``;
    the default ``c = 1.10`` is the ERFNet repository's: its decoder weights hard-coded in
    Eromera/erfnet_pytorch ``train/main.py`` (road 2.81 ... motorcycle 10.41) are this formula
    with c = 1.10, bounded by 1 / ln(1.10) = 10.49 (its encoder weights use c = 1.20).
    """
    counts = np.asarray(histogram, np.float64)
    if counts.ndim != 1 or len(counts) < num_classes or counts.sum() <= 0 or (counts < 0).any():
        raise ConfigError(f'class histogram must be non-negative counts of at least '
                          f'{num_classes} classes with some pixels, got {len(counts)} values '
                          f'summing to {counts.sum()}')
    if c <= 1:
        raise ConfigError(f'the constant c must exceed 1 (ln(c) > 0), got {c}')
    share = counts[:num_classes] / counts.sum()
    return torch.from_numpy(1.0 / np.log(c + share)).float()


def make_criterion(*, class_weights: Optional[torch.Tensor] = None,
                   ignore_index: int = VOID_LABEL) -> nn.Module:
    """Cross-entropy over logits ``(B,C,H,W)`` and labels ``(B,H,W)`` int64, mean over the
    pixels not labelled ``ignore_index`` (weighted mean when ``class_weights`` are given)."""
    return nn.CrossEntropyLoss(weight=class_weights, ignore_index=ignore_index)
