"""Post-hoc scorers on the logits of any segmentation model (papers 000 and 004)."""
import concurrent.futures
import threading
from typing import Optional

import cv2
import numpy as np
import torch

from anomseg_ros.errors import ConfigError
from anomseg_ros.scoring.base import check_temperature, on_cpu_without_gradients, Scorer
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

    def __call__(self, logits: torch.Tensor,
                 features: Optional[torch.Tensor] = None) -> torch.Tensor:
        if by_planes_applies(logits):
            return max_softmax_by_planes(self.inlier_logits(logits), self.temperature)
        return super().__call__(logits, features)


# the largest float32 below 1: what cv2.threshold keeps of exp(l - max) (the max's own is 1)
BELOW_ONE = float(np.nextafter(np.float32(1), np.float32(0)))
# rows and columns from which OpenCV's planes pay (and no plane is small enough for OpenCV's
# Python binding to take it for a scalar)
MIN_PLANE_SIDE = 16


def by_planes_applies(logits: torch.Tensor) -> bool:
    """Whether ``max_softmax_by_planes`` computes these logits: float32 ``(B,C,H,W)`` on the
    CPU, each channel's plane contiguous (not channels-last) and at least ``MIN_PLANE_SIDE``
    on each side, no gradient wanted."""
    return logits.dim() == 4 and on_cpu_without_gradients(logits) and \
        logits.dtype == torch.float32 and min(logits.shape[2:]) >= MIN_PLANE_SIDE and \
        logits.stride(3) == 1 and logits.stride(2) == logits.shape[3]


def max_softmax_by_planes(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``MaxSoftmax.score`` on the CPU, one channel plane at a time with OpenCV, the rows split
    between ``torch.get_num_threads()`` threads (OpenCV and numpy let go of the GIL): the
    running max and sums stay in the core's cache where PyTorch's whole-tensor operations
    stream each intermediate through memory (``bench/bench_scorers.py``: a fifth to a quarter
    less time than by blocks of rows in PyTorch, on two cores). OpenCV's exp is within 1.1e-6
    relative of the exact one; the sum keeps the max's 1 apart
    (``_max_softmax_rows``), so a sure pixel's score is within 1.2e-6 relative of float64,
    where the tensor path's is within 5e-7 absolute."""
    planes = logits.detach().numpy()
    batch, _, height, _ = planes.shape
    scores = np.empty((batch, height, planes.shape[3]), np.float32)
    parts = max(1, min(torch.get_num_threads(), height // MIN_PLANE_SIDE))
    bounds = np.linspace(0, height, parts + 1).astype(int)
    jobs = [(planes[b, :, top:bottom], scores[b, top:bottom], 1.0 / temperature)
            for b in range(batch) for top, bottom in zip(bounds[:-1], bounds[1:])]
    if len(jobs) == 1:
        _max_softmax_rows(*jobs[0])
    else:
        list(_plane_threads(parts).map(lambda job: _max_softmax_rows(*job), jobs))
    return torch.from_numpy(scores)


def _max_softmax_rows(planes: np.ndarray, out: np.ndarray, scale: float) -> None:
    """(s - 1) / s of ``planes`` ``(C,h,W)`` into ``out`` ``(h,W)``, s = sum_c exp((l_c -
    max) * scale). The terms below 1 are summed apart from the max's own 1 (and a tie's), so
    s - 1 of a sure pixel keeps the precision of its small terms, 1e-6 relative, where
    adding them to 1 first would round it to 1.2e-7 absolute."""
    top = planes[0].copy()
    for plane in planes[1:]:
        cv2.max(top, plane, dst=top)
    total, small = np.zeros_like(top), np.zeros_like(top)
    term, below = np.empty_like(top), np.empty_like(top)
    for plane in planes:
        cv2.subtract(plane, top, dst=term)
        if scale != 1.0:  # a scalar by numpy: OpenCV's binding makes it a 4-vector
            np.multiply(term, scale, out=term)
        cv2.exp(term, dst=term)
        cv2.add(total, term, dst=total)
        cv2.threshold(term, BELOW_ONE, 0, cv2.THRESH_TOZERO_INV, dst=below)  # the 1s out
        cv2.add(small, below, dst=small)
    ties = np.rint(np.subtract(total, small, out=term), out=term)  # channels at the max
    np.add(small, ties, out=total)  # s
    np.add(small, np.subtract(ties, 1.0, out=ties), out=small)  # s - 1
    np.divide(small, total, out=out)


_POOL: Optional[concurrent.futures.ThreadPoolExecutor] = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def _plane_threads(count: int) -> concurrent.futures.ThreadPoolExecutor:
    """One pool for every scorer of the process, of at least ``count`` threads."""
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE < count:
            if _POOL is not None:  # its threads end once the jobs given to it are done
                _POOL.shutdown(wait=False)
            _POOL = concurrent.futures.ThreadPoolExecutor(count, thread_name_prefix='anomseg_msp')
            _POOL_SIZE = count
        return _POOL


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
