"""Training losses over trainIds: cross-entropy (class-balanced as ENet / ERFNet when asked),
focal, Logit Normalization and Enhanced Isotropy Maximization, alone or summed with weights
(paper 001 Table 4: ``eiml+focal``, ``logitnorm+ce`` ...), plus the void class and BiSeNet's
auxiliary outputs."""
import math
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

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


class PixelLoss(nn.Module):
    """A loss over logits ``(B,C,H,W)`` and labels ``(B,H,W)`` averaged over the pixels not
    labelled ``ignore_index``, weighted by ``class_weights[label]`` as cross-entropy weights."""

    def __init__(self, *, class_weights: Optional[torch.Tensor] = None,
                 ignore_index: int = VOID_LABEL):
        super().__init__()
        self.ignore_index = ignore_index
        self.register_buffer('class_weights', class_weights, persistent=False)

    def cross_entropy(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, weight=self.class_weights,
                               ignore_index=self.ignore_index)


class CrossEntropyLoss(PixelLoss):
    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.cross_entropy(logits, labels)


class FocalLoss(PixelLoss):
    """Focal loss (Lin et al., ICCV 2017): ``-(1 - p_t)^gamma log p_t`` per pixel, averaged
    over the pixels not ignored, weighted by ``class_weights[t]`` as cross-entropy weights."""

    def __init__(self, *, gamma: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        if gamma < 0:
            raise ConfigError(f'the focal loss gamma must be >= 0, got {gamma}')
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        valid = labels != self.ignore_index
        target = labels.masked_fill(~valid, 0)
        log_p = F.log_softmax(logits.float(), dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
        loss = -((1.0 - log_p.exp()) ** self.gamma) * log_p
        weight = valid.float()
        if self.class_weights is not None:
            weight = weight * self.class_weights[target]
        return (loss * weight).sum() / weight.sum().clamp_min(1e-12)


class LogitNormLoss(PixelLoss):
    """Logit Normalization (Wei et al., ICML 2022; paper 001): cross-entropy on the logits
    divided by ``tau`` times their L2 norm over the classes, per pixel. Only the loss sees the
    normalised logits; inference uses the raw ones, as in the paper."""

    def __init__(self, *, tau: float = 0.04, **kwargs):
        super().__init__(**kwargs)
        if tau <= 0:
            raise ConfigError(f'the LogitNorm temperature tau must be positive, got {tau}')
        self.tau = tau

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        norms = torch.linalg.vector_norm(logits, dim=1, keepdim=True) + 1e-7
        return self.cross_entropy(logits / (norms * self.tau), labels)


class IsoMaxPlusLoss(PixelLoss):
    """Enhanced Isotropy Maximization loss (IsoMax+, Macedo and Ludermir; paper 001): the
    cross-entropy of the distance-based logits of ``IsoMaxPlusHead`` multiplied by the entropic
    scale (10 in the paper), which applies only in training."""

    def __init__(self, *, entropic_scale: float = 10.0, **kwargs):
        super().__init__(**kwargs)
        if entropic_scale <= 0:
            raise ConfigError(f'the entropic scale must be positive, got {entropic_scale}')
        self.entropic_scale = entropic_scale

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.cross_entropy(self.entropic_scale * logits.float(), labels)


LOSSES = {'ce': CrossEntropyLoss, 'focal': FocalLoss, 'logitnorm': LogitNormLoss,
          'eiml': IsoMaxPlusLoss}
# the paper-001 spelling of each (Table 4)
LOSS_TITLES = {'ce': 'CE', 'focal': 'FL', 'logitnorm': 'LN', 'eiml': 'EIML'}


def parse_loss_spec(spec: str) -> List[Tuple[float, str]]:
    """``"eiml+focal"`` or ``"0.5*logitnorm+ce"`` as ``[(weight, name), ...]``."""
    terms = []
    for part in (spec or '').replace(' ', '').split('+'):
        weight, _, name = part.rpartition('*')
        try:
            weight = float(weight) if weight else 1.0
        except ValueError:
            weight = math.nan
        if name not in LOSSES or not weight > 0:
            raise ConfigError(f'cannot read the loss {spec!r} at {part!r}: write terms joined '
                              f'by "+", each a loss name with an optional positive weight '
                              f'("0.5*focal"); the losses are {", ".join(LOSSES)}')
        if name in [n for _, n in terms]:
            raise ConfigError(f'loss {name!r} appears twice in {spec!r}; give it one weight')
        terms.append((weight, name))
    return terms


def loss_title(spec: str) -> str:
    """The paper's name of a loss spec: ``eiml+focal`` -> ``EIML + FL``."""
    return ' + '.join((f'{w:g}*' if w != 1 else '') + LOSS_TITLES[n]
                      for w, n in parse_loss_spec(spec))


def needs_isomax_head(spec: str) -> bool:
    return any(name == 'eiml' for _, name in parse_loss_spec(spec))


class SegmentationLoss(nn.Module):
    """The weighted sum of the terms of a loss spec over a model's outputs.

    Outputs may be a tuple ``(logits, aux, ...)`` (BiSeNet): the auxiliary outputs add
    ``aux_weight`` times their loss (paper 000 eq. 5). With ``void_class`` the ignored pixels
    (255) become that class, to train the void classifier (paper 000 eq. 11).
    """

    def __init__(self, spec: str = 'ce', *, class_weights: Optional[torch.Tensor] = None,
                 ignore_index: int = VOID_LABEL, void_class: Optional[int] = None,
                 aux_weight: float = 1.0, options: Optional[dict] = None):
        super().__init__()
        options = options or {}
        self.spec, self.ignore_index, self.void_class = spec, ignore_index, void_class
        self.aux_weight = aux_weight
        self.weights, self.terms = [], nn.ModuleDict()
        for weight, name in parse_loss_spec(spec):
            kwargs = {k: v for k, v in options.get(name, {}).items()}
            self.terms[name] = LOSSES[name](class_weights=class_weights,
                                            ignore_index=ignore_index, **kwargs)
            self.weights.append(weight)

    def single(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()  # bf16 / fp16 autocast: the softmax and its sums in float32
        return sum(w * term(logits, labels) for w, term in zip(self.weights,
                                                               self.terms.values()))

    def forward(self, outputs, labels: torch.Tensor) -> torch.Tensor:
        if self.void_class is not None:
            labels = labels.masked_fill(labels == self.ignore_index, self.void_class)
        if not isinstance(outputs, (tuple, list)):
            return self.single(outputs, labels)
        main, *aux = outputs
        loss = self.single(main, labels)
        for extra in aux:
            loss = loss + self.aux_weight * self.single(extra, labels)
        return loss


def make_criterion(spec: str = 'ce', *, class_weights: Optional[torch.Tensor] = None,
                   ignore_index: int = VOID_LABEL, void_class: Optional[int] = None,
                   aux_weight: float = 1.0, options: Optional[dict] = None) -> nn.Module:
    """The training loss ``spec`` (``"ce"``, ``"eiml+focal"`` ...) over logits ``(B,C,H,W)``
    (or a tuple with auxiliary outputs) and labels ``(B,H,W)`` int64, averaged over the pixels
    not labelled ``ignore_index`` (class-weighted when ``class_weights`` are given).
    ``options`` holds each loss's keyword arguments: ``{"focal": {"gamma": 2.0}}``."""
    return SegmentationLoss(spec, class_weights=class_weights, ignore_index=ignore_index,
                            void_class=void_class, aux_weight=aux_weight, options=options)
