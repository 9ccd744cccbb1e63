"""Post-hoc scorers on the logits of any segmentation model (papers 000 and 004)."""
from typing import Optional

import torch

from anomseg_ros.errors import ConfigError
from anomseg_ros.scoring.base import check_temperature, Scorer
from anomseg_ros.scoring.registry import register_scorer


@register_scorer('msp')
class MaxSoftmax(Scorer):
    """1 - max softmax (paper 000 eq. 7); with ``temperature`` T != 1 it is eq. 10. Takes the
    checkpoint's calibrated temperature (paper 000 section IV.A) unless told otherwise."""

    by_rows = True
    calibrated_temperature = True
    score_range = (0.0, 1.0)

    def __init__(self, *, num_inlier_classes: Optional[int] = None, temperature: float = 1.0):
        super().__init__(num_inlier_classes=num_inlier_classes)
        self.temperature = check_temperature(temperature)

    def score(self, logits):
        # 1 - max softmax = (s - 1) / s with s = sum_c exp((l_c - max) / T): one exp per logit
        # and no probability map (logsumexp takes the max again and a log: a quarter more time
        # at 1024x512 on the CPU). s - 1 is exact for s in [1, 2], so a score near 0 (max
        # softmax near 1) is as precise as the sum (1e-7), not as the logits (1e-6 near 10):
        # fewer pixels tie.
        scaled = self.inlier_logits(logits)
        shifted = scaled - scaled.amax(dim=1, keepdim=True)
        if self.temperature != 1.0:
            shifted = shifted / self.temperature
        total = shifted.exp_().sum(dim=1)
        return (total - 1).div_(total)


@register_scorer('temperature')
class TemperatureScaledMaxSoftmax(MaxSoftmax):
    """Temperature-scaled MSP (paper 000 eq. 10); T = 1.5, the paper's choice, unless given."""

    calibrated_temperature = False

    def __init__(self, *, num_inlier_classes: Optional[int] = None, temperature: float = 1.5):
        super().__init__(num_inlier_classes=num_inlier_classes, temperature=temperature)


@register_scorer('maxlogit')
class MaxLogit(Scorer):
    """-max logit (paper 000 eq. 8)."""

    def score(self, logits):
        return -self.inlier_logits(logits).amax(dim=1)


@register_scorer('maxentropy')
class MaxEntropy(Scorer):
    """Entropy of the softmax, natural log (paper 000 eq. 9)."""

    by_rows = True

    def bounds(self):
        import math
        classes = self.num_inlier_classes
        return (0.0, math.log(classes) if classes else None)

    def score(self, logits):
        log_probs = torch.log_softmax(self.inlier_logits(logits), dim=1)
        return -(log_probs.exp() * log_probs).sum(dim=1)


@register_scorer('energy')
class FreeEnergy(Scorer):
    """Free energy E = -T logsumexp(logits / T) of the inlier logits (paper 004 eq. 4)."""

    by_rows = True

    def __init__(self, *, num_inlier_classes: Optional[int] = None, temperature: float = 1.0):
        super().__init__(num_inlier_classes=num_inlier_classes)
        self.temperature = check_temperature(temperature)

    def score(self, logits):
        scaled = self.inlier_logits(logits) / self.temperature
        return -self.temperature * torch.logsumexp(scaled, dim=1)


@register_scorer('sml')
class StandardizedMaxLogit(Scorer):
    """Standardized max logit (SML, Jung et al., ICCV 2021): the max logit standardised by the
    mean and standard deviation of the max logit of its predicted class, negated, so higher is
    more anomalous: ``-(L_max - mu_c) / sigma_c``. The class statistics come from ordinary
    frames (``anomseg calibrate --class-stats --unlabeled FRAMES``), stored in the checkpoint;
    no anomaly labels are needed. ``sml+boundary`` adds the paper's boundary suppression and
    dilated smoothing."""

    by_rows = True

    def __init__(self, *, num_inlier_classes: Optional[int] = None,
                 class_stats: Optional[dict] = None):
        super().__init__(num_inlier_classes=num_inlier_classes)
        if not class_stats or 'mean' not in class_stats or 'std' not in class_stats:
            raise ConfigError("scorer 'sml' needs the per-class statistics of this model's max "
                              "logit on ordinary frames: anomseg calibrate --weights CKPT "
                              "--class-stats --unlabeled FRAMES --in-place")
        self.class_stats = f'{class_stats.get("frames", "?")} frames'
        self.mean = torch.tensor(class_stats['mean'], dtype=torch.float32)
        self.std = torch.tensor(class_stats['std'], dtype=torch.float32).clamp_min(1e-6)
        if num_inlier_classes is not None and len(self.mean) != num_inlier_classes:
            raise ConfigError(f"scorer 'sml': the checkpoint's class statistics are for "
                              f'{len(self.mean)} classes, the model has {num_inlier_classes}; '
                              f'compute them again with anomseg calibrate --class-stats')

    def score(self, logits):
        values, classes = self.inlier_logits(logits).max(dim=1)
        return -(values - self.mean[classes]) / self.std[classes]


@register_scorer('void')
class VoidProbability(Scorer):
    """Softmax probability of the void channel (paper 000 eq. 11).

    Needs a model trained with void as an extra output; ``void_channel`` defaults to the channel
    after the inliers (19 for Cityscapes).
    """

    by_rows = True
    score_range = (0.0, 1.0)

    def __init__(self, *, num_inlier_classes: Optional[int] = None,
                 void_channel: Optional[int] = None):
        super().__init__(num_inlier_classes=num_inlier_classes)
        self.void_channel = void_channel

    def score(self, logits):
        channel = self.void_channel
        if channel is None:
            channel = self.num_inlier_classes if self.num_inlier_classes is not None else -1
        if self.num_inlier_classes is None and self.void_channel is None:
            raise ConfigError("scorer 'void' needs a model with a void output: this model has "
                              "no void channel (train one with void as an extra class)")
        if not -logits.shape[1] <= channel < logits.shape[1]:
            raise ConfigError(f"scorer 'void' reads channel {channel}, but the model has only "
                              f'{logits.shape[1]} outputs; it needs a model with a void output')
        # the softmax at one channel, without the whole probability map
        return torch.exp(logits[:, channel] - torch.logsumexp(logits, dim=1))
