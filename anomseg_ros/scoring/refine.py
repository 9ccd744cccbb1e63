"""Training-free refinements of any pixelwise score, as scorer options (``maxlogit+boundary``).

- ``boundary``: boundary suppression and dilated smoothing of the SML paper (Jung et al., ICCV
  2021), with its official defaults: the pixels within ``BOUNDARY_WIDTH`` (4) of a change of
  the predicted class take, over ``BOUNDARY_ITERATIONS`` (4) rounds from the widest band
  inwards, the mean score of their 3x3 neighbours outside the band (edges replicated); then
  the map is convolved with a 7x7 Gaussian (sigma 1) dilated by 6. Class edges are where
  classic scores fire on every image; small obstacles are not edges of their own class.
- ``smooth``: the 7x7 Gaussian (sigma 1, edges replicated) that PEBAL applies at test time.

Both run in OpenCV on the CPU, at the network's resolution, before the score is brought to the
camera's size: boundary suppression is a few box filters a round, the dilated Gaussian one
separable filter (the 7 taps of each 1-D kernel 6 pixels apart). A refined score keeps its
scorer's bounds (every step averages).
"""
from typing import Optional

import cv2
import numpy as np
import torch

from anomseg_ros.errors import ConfigError
from anomseg_ros.scoring.base import Scorer

BOUNDARY_WIDTH = 4
BOUNDARY_ITERATIONS = 4
SMOOTH_SIZE, SMOOTH_SIGMA, SMOOTH_DILATION = 7, 1.0, 6
REFINEMENTS = ('boundary', 'smooth')
SEPARATOR = '+'

_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
_SQUARE = np.ones((3, 3), np.uint8)


def gaussian_taps(size: int = SMOOTH_SIZE, sigma: float = SMOOTH_SIGMA) -> np.ndarray:
    """A normalised 1-D Gaussian; its outer product is the normalised 2-D one."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    taps = np.exp(-x ** 2 / (2 * sigma ** 2))
    return (taps / taps.sum()).astype(np.float32)


def _diamond(radius: int) -> np.ndarray:
    """The 3x3 cross dilated ``radius - 1`` times: pixels within L1 distance ``radius``."""
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return (np.abs(y) + np.abs(x) <= radius).astype(np.uint8)


def class_boundaries(labels: np.ndarray) -> np.ndarray:
    """``(H,W)`` uint8, 1 where the predicted class changes: its 3x3-cross dilation differs
    from its 3x3 erosion (SML's ``find_boundaries``)."""
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    return (cv2.dilate(labels, _CROSS) != cv2.erode(labels, _SQUARE)).astype(np.uint8)


def boundary_suppression(score: np.ndarray, labels: np.ndarray, *,
                         width: int = BOUNDARY_WIDTH,
                         iterations: int = BOUNDARY_ITERATIONS) -> np.ndarray:
    """SML's boundary suppression of ``score`` ``(H,W)`` around the class edges of ``labels``
    (see the module doc)."""
    if iterations and width % iterations:
        raise ConfigError(f'the boundary width ({width}) must be a multiple of the number of '
                          f'iterations ({iterations})')
    step = width // iterations if iterations else 0
    boundaries = class_boundaries(labels)
    out = np.array(score, dtype=np.float32)  # a copy: only band pixels change
    for iteration in range(iterations):
        radius = 0 if width == 0 or iteration == iterations - 1 else \
            width - step * iteration - 1
        band = boundaries if radius == 0 else cv2.dilate(boundaries, _diamond(radius))
        valid = np.subtract(1.0, band, dtype=np.float32)
        total = cv2.boxFilter(cv2.multiply(out, valid), -1, (3, 3), normalize=False,
                              borderType=cv2.BORDER_REPLICATE)
        count = cv2.boxFilter(valid, -1, (3, 3), normalize=False,
                              borderType=cv2.BORDER_REPLICATE)
        where = band.astype(bool)
        inside, counted = total[where], np.rint(count[where])  # counts of ones and zeros
        out[where] = np.where(counted > 0, inside / np.maximum(counted, 1.0), out[where])
    return out


def dilated_smoothing(score: np.ndarray, *, size: int = SMOOTH_SIZE,
                      sigma: float = SMOOTH_SIGMA, dilation: int = SMOOTH_DILATION) -> np.ndarray:
    """``score`` convolved with a ``size`` x ``size`` Gaussian whose taps are ``dilation``
    pixels apart, edges replicated (SML's second stage; ``dilation`` 1 is PEBAL's smoothing)."""
    taps = gaussian_taps(size, sigma)
    kernel = np.zeros((size - 1) * dilation + 1, np.float32)
    kernel[::dilation] = taps
    return cv2.sepFilter2D(np.ascontiguousarray(score, dtype=np.float32), -1, kernel, kernel,
                           borderType=cv2.BORDER_REPLICATE)


def refine(score: np.ndarray, labels: Optional[np.ndarray], refinement: str) -> np.ndarray:
    """``score`` ``(H,W)`` refined by ``refinement`` (one of ``REFINEMENTS``); ``boundary``
    needs the predicted ``labels``."""
    if refinement == 'boundary':
        if labels is None:
            raise ConfigError('the boundary refinement needs the predicted labels')
        return dilated_smoothing(boundary_suppression(score, labels))
    if refinement == 'smooth':
        return dilated_smoothing(score, dilation=1)
    raise ConfigError(f'unknown refinement {refinement!r}; refinements: {", ".join(REFINEMENTS)}')


def split_name(name: str):
    """``"maxlogit+boundary"`` as ``("maxlogit", "boundary")``; ``("msp", "")`` for a plain
    scorer."""
    base, _, refinement = name.partition(SEPARATOR)
    if refinement and refinement not in REFINEMENTS:
        raise ConfigError(f'unknown refinement {refinement!r} in scorer {name!r}; refinements: '
                          f'{", ".join(REFINEMENTS)} (e.g. maxlogit{SEPARATOR}boundary)')
    return base, refinement


class Refined(Scorer):
    """``scorer``'s score with ``refinement`` applied, image by image, on the CPU."""

    def __init__(self, scorer: Scorer, refinement: str):
        super().__init__(num_inlier_classes=scorer.num_inlier_classes)
        split_name(f'{scorer.name}{SEPARATOR}{refinement}')
        self.scorer, self.refinement = scorer, refinement
        self.name = f'{scorer.name}{SEPARATOR}{refinement}'
        self.method = scorer.method
        self.sources = getattr(scorer, 'sources', {})

    @property
    def temperature(self):
        return getattr(self.scorer, 'temperature', None)

    def bounds(self):
        return self.scorer.bounds()

    def settings(self):
        """What the refined score runs with: the settings of its base score."""
        return self.scorer.settings()

    def __call__(self, logits: torch.Tensor,
                 features: Optional[torch.Tensor] = None) -> torch.Tensor:
        scores = self.scorer(logits, features)
        labels = None
        if self.refinement == 'boundary':
            inliers = self.scorer.inlier_logits(logits.float())
            labels = inliers.max(dim=1).indices.to(torch.uint8).cpu().numpy()
        refined = [refine(score.float().cpu().numpy(),
                          None if labels is None else labels[index], self.refinement)
                   for index, score in enumerate(scores)]
        return torch.from_numpy(np.stack(refined)).to(scores.device)
