"""The scorer contract: logits ``(B,C,H,W)`` in, anomaly scores ``(B,H,W)`` out, higher = more
anomalous."""
import inspect
from typing import Dict, Optional, Tuple

import torch

from anomseg_ros.errors import ConfigError


class Scorer:
    """Base class of the anomaly scorers.

    ``num_inlier_classes`` says how many leading logit channels are inlier classes; a Cityscapes
    model with a void output has 20 channels of which the first 19 are inliers. ``None`` means
    every channel is an inlier. The score of a learned method (PEBAL, SLEEG, SynBoost) names it
    in ``method`` and runs only on a checkpoint that method trained (its numbers mean nothing
    elsewhere).
    """

    name = ''
    # the score of a pixel depends on that pixel's logits only, through whole-frame temporaries:
    # on the CPU ``__call__`` computes it on blocks of rows (``in_row_blocks``), the same numbers
    # (to float32 rounding) in a third to a half of the time
    by_rows = False
    method = ''
    # takes the temperature ``anomseg calibrate`` wrote into the checkpoint, unless one is given
    calibrated_temperature = False
    # where each setting came from ("given", "checkpoint calibration", ...), set by its builder
    sources: Dict[str, str] = {}

    def __init__(self, *, num_inlier_classes: Optional[int] = None):
        if num_inlier_classes is not None and num_inlier_classes < 2:
            raise ConfigError(f'num_inlier_classes must be at least 2, got {num_inlier_classes}')
        self.num_inlier_classes = num_inlier_classes

    # the scores' bounds (None: unbounded on that side); a threshold outside them would make a
    # mask that never or always fires
    score_range: Tuple[Optional[float], Optional[float]] = (None, None)

    def bounds(self) -> Tuple[Optional[float], Optional[float]]:
        """``score_range`` of this scorer (subclasses whose bounds depend on their settings
        override it)."""
        return self.score_range

    def check_threshold(self, threshold: float) -> float:
        """Refuse a mask threshold outside this scorer's scores."""
        low, high = self.bounds()
        if (low is not None and threshold < low) or (high is not None and threshold > high):
            span = f'[{low:g}, {high:g}]' if low is not None and high is not None else \
                (f'at least {low:g}' if low is not None else f'at most {high:g}')
            raise ConfigError(f'threshold {threshold:g} is outside the scores of {self.name} '
                              f'({span}): its mask would never or always fire; give one in '
                              f'that range, or "auto"')
        return threshold

    def inlier_logits(self, logits: torch.Tensor) -> torch.Tensor:
        if self.num_inlier_classes is None:
            return logits
        if logits.shape[1] < self.num_inlier_classes:
            raise ConfigError(f'scorer {self.name!r} expects at least {self.num_inlier_classes} '
                              f'logit channels, the model gives {logits.shape[1]}')
        return logits[:, :self.num_inlier_classes]

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, logits: torch.Tensor,
                 features: Optional[torch.Tensor] = None) -> torch.Tensor:
        if logits.dim() != 4:
            raise ValueError(f'logits must be (B,C,H,W), got shape {tuple(logits.shape)}')
        logits = logits.float()
        return self.pixelwise(self.score, logits) if self.by_rows else self.score(logits)

    @staticmethod
    def pixelwise(function, logits: torch.Tensor) -> torch.Tensor:
        """``function`` of ``logits`` that works pixel by pixel, on blocks of rows where that
        is faster (``in_row_blocks``: the CPU, no gradients wanted), else on the whole map."""
        if on_cpu_without_gradients(logits):
            return in_row_blocks(function, logits)
        return function(logits)

    def settings(self) -> Dict[str, object]:
        """Every setting the score is computed with (its keyword parameters but the model's
        shape), as plain values, for reports: ``{"temperature": 1.5}``."""
        signature = inspect.signature(type(self).__init__)
        values = {}
        for p in signature.parameters.values():
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != 'num_inlier_classes' \
                    and hasattr(self, p.name):
                value = getattr(self, p.name)
                values[p.name] = '+'.join(value) if isinstance(value, tuple) else value
        return values

    def describe(self) -> str:
        """``"temperature=2 (checkpoint calibration)"``; ``"none"`` without settings."""
        parts = []
        for key, value in self.settings().items():
            source = self.sources.get(key, 'default')
            parts.append(f'{key}={value:g}' if isinstance(value, float) else f'{key}={value}')
            parts[-1] += f' ({source})'
        return ', '.join(parts) or 'none'

    def __repr__(self):
        return f'{type(self).__name__}(num_inlier_classes={self.num_inlier_classes})'


def on_cpu_without_gradients(tensor: torch.Tensor) -> bool:
    """Whether a scorer may take its CPU fast paths on ``tensor``: on the CPU, and no gradient
    wanted through it (training scores the whole map with autograd's own operations)."""
    return tensor.device.type == 'cpu' and not (torch.is_grad_enabled() and
                                                tensor.requires_grad)


# a block of rows: 5 MiB for 19 float32 logits, under glibc's 32 MiB ceiling for heap blocks
BLOCK_PIXELS = 65536


def in_row_blocks(function, tensor: torch.Tensor) -> torch.Tensor:
    """``function`` of a ``(B,C,H,W)`` tensor that gives ``(B,H,W)`` pixel by pixel, computed
    on blocks of rows. On the CPU a whole frame's temporaries (40 MB each for 19 channels at
    1024x512) are above the size malloc takes from its heap, so they are fresh pages at every
    call, and faulting them in costs more than the arithmetic (``bench/bench_scorers.py``
    measures both ways; docs/speed.md has the numbers). A block's are reused from the heap;
    few large blocks keep the per-call overhead of PyTorch's operations small (8,192 pixels
    a block cost 1.5 ms more at 512x256 and 3 ms more at 1024x512)."""
    rows = max(1, BLOCK_PIXELS // max(1, tensor.shape[3]))
    return torch.cat([function(tensor[:, :, start:start + rows])
                      for start in range(0, tensor.shape[2], rows)], dim=1)


# Temperatures that keep logits / T finite for any float32 logit a network gives (|l| < 1e4).
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 100.0


def check_temperature(temperature: float) -> float:
    if not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE:  # also refuses NaN
        raise ConfigError(f'temperature must be between {MIN_TEMPERATURE} and '
                          f'{MAX_TEMPERATURE} (below, logits / T overflow to NaN scores), got '
                          f'{temperature}')
    return float(temperature)
