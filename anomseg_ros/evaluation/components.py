"""Component-level anomaly metrics of SegmentMeIfYouCan, accumulated image by image.

Chan et al., "SegmentMeIfYouCan: A Benchmark for Anomaly Segmentation" (NeurIPS 2021 datasets
track) judge a binary anomaly mask by its connected components rather than its pixels. Per
image, with a predicted mask (score >= threshold) and a label (1 anomaly, 0 inlier, 255 void):

- Ground-truth components K: connected components (8-connectivity, ``scipy.ndimage.label``) of
  the pixels labelled 1. Predicted components: connected components of the predicted mask
  restricted to non-void pixels, ``prediction & (label != 255)``.
- sIoU of a ground-truth component k: ``|k & P(k)| / |(k | P(k)) - A(k)|``, where P(k) is the
  union of the predicted components that intersect k and A(k) the pixels of all *other*
  ground-truth components, so one prediction covering several objects is not penalised for
  covering the others. k is a true positive at tau if sIoU(k) > tau, else a false negative.
- PPV of a predicted component p: ``|p & K(p)| / |p|``, K(p) the union of the ground-truth
  components intersecting p. p is a false positive at tau if PPV(p) <= tau.
- Minimum sizes: predicted components of fewer than ``min_pred_size`` pixels (counted on
  non-void pixels) are discarded before matching. Ground-truth components of fewer than
  ``min_gt_size`` pixels are ignored entirely: they are neither TP nor FN, and their pixels
  become void, so they count in no component's size, intersection or union (a prediction lying
  only on them is no component at all). Predicted components are labelled before those pixels
  are voided, so a prediction bridged by a small object stays one component.
- Over a dataset, TP(tau), FN(tau), FP(tau) are summed over all images for tau in
  {0.25, 0.30, ..., 0.75}; F1(tau) = 2 TP / (2 TP + FN + FP). Reported: ``mean_f1`` (F1 averaged
  over the thresholds, the SMIYC headline), ``f1_at_0.5``, ``siou_gt`` (mean sIoU over all
  ground-truth components) and ``ppv`` (mean PPV over all predicted components). Quantities
  with nothing to average (no components at all, an empty dataset) are NaN.

Comparing with the benchmark: SegmentMeIfYouCan's evaluation removes small predicted segments
and small ground-truth objects (``SMIYC_MIN_SIZES``), which ``anomseg eval`` applies by default
by the dataset's track (``track_of``); this class's own defaults (0, nothing removed) are not
the benchmark's. The public evaluation code
(github.com/SegmentMeIfYouCan/road-anomaly-benchmark, file
road_anomaly_benchmark/metrics/instance_segmentation.py, as stored at commit 7bf85bf) configures
``thresh_segsize=500, thresh_instsize=100`` for the anomaly track and ``50, 10`` for the obstacle
track; we read these there and cannot check them against the leaderboard's own runs, so verify
them against the version you compare with. That code also picks the pixel threshold at the best
pixel-level F1 and differs from the definitions above only at exact ties: it thresholds scores
with ``>``, counts TP at sIoU >= tau and FP at PPV < tau (an older version counted FP by the
predicted components' sIoU).
"""
import math
from typing import Dict, Iterable, Sequence, Tuple

import numpy as np
from scipy import ndimage

from anomseg_ros.errors import ConfigError
from anomseg_ros.evaluation.metrics import IGNORE_LABEL

# 0.25, 0.30, ..., 0.75 as the decimal literals (not linspace's 0.30000000000000004), so that a
# ratio such as 3/10 compares with 0.3 as exactly as it does on paper
DEFAULT_THRESHOLDS = tuple(round(0.25 + 0.05 * i, 2) for i in range(11))
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)

# SegmentMeIfYouCan's minimum sizes in pixels at the label's own resolution, per track:
# (min_gt_size, min_pred_size) = (thresh_instsize, thresh_segsize) of the configs
# 'SegEval-AnomalyTrack' and 'SegEval-ObstacleTrack' of class MetricSegment in
# road_anomaly_benchmark/metrics/instance_segmentation.py (commit 7bf85bf).
SMIYC_MIN_SIZES = {'anomaly': (100, 500), 'obstacle': (10, 50)}
TRACKS = tuple(SMIYC_MIN_SIZES)
# dataset folder names of the obstacle track (RoadObstacle21, as "RoadObsticle21" in the course
# bundle too; Lost and Found and Fishyscapes Lost & Found, whose anomalies are road obstacles)
_OBSTACLE_NAMES = ('obstacle', 'obstic', 'lost')


def track_of(dataset_name: str) -> str:
    """The SegmentMeIfYouCan track whose settings fit a dataset, by its folder name:
    ``obstacle`` for road-obstacle sets, else ``anomaly``."""
    name = dataset_name.lower()
    return 'obstacle' if any(key in name for key in _OBSTACLE_NAMES) else 'anomaly'


def scaled_size(size: int, scale: float) -> int:
    """A minimum size meant at one resolution, at a resolution ``scale`` times its area
    (rounded half up; a positive size stays at least 1)."""
    if size <= 0 or scale == 1.0:
        return size
    return max(1, int(size * scale + 0.5))


def _components(mask: np.ndarray, min_size: int) -> Tuple[np.ndarray, int, np.ndarray]:
    """Label 8-connected components, drop those under ``min_size`` pixels, number the rest 1..n.

    Returns the label image (0 = no component), n, and a boolean image of the dropped pixels.
    """
    labels, count = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    keep = np.bincount(labels.ravel(), minlength=count + 1) >= min_size
    keep[0] = False
    new_ids = np.where(keep, np.cumsum(keep), 0)
    dropped = ~keep
    dropped[0] = False
    return new_ids[labels], int(keep.sum()), dropped[labels]


def component_scores(prediction_mask: np.ndarray, label: np.ndarray, *, min_gt_size: int = 0,
                     min_pred_size: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """sIoU of each ground-truth component and PPV of each predicted component of one image.

    ``prediction_mask`` and ``label`` must be 2-D arrays of one shape, checked by the caller.
    """
    valid = label != IGNORE_LABEL
    gt, num_gt, small_gt = _components(label == 1, min_gt_size)
    pred, num_pred, _ = _components(prediction_mask & valid, min_pred_size)
    evaluated = valid & ~small_gt
    gt, pred = gt[evaluated], pred[evaluated]
    gt_size = np.bincount(gt, minlength=num_gt + 1)[1:]
    pred_size = np.bincount(pred, minlength=num_pred + 1)[1:]
    # one entry per (ground-truth, predicted) pair of components that touch, ids from 0
    both = (gt > 0) & (pred > 0)
    pair_keys, overlap = np.unique(gt[both].astype(np.int64) * (num_pred + 1) + pred[both],
                                   return_counts=True)
    pair_gt, pair_pred = np.divmod(pair_keys, num_pred + 1)
    pair_gt, pair_pred = pair_gt - 1, pair_pred - 1
    # |p & K(p)|: every ground-truth pixel inside p belongs to a component intersecting p
    pred_on_gt = np.bincount(pair_pred, weights=overlap, minlength=num_pred)
    # per ground-truth k: |k & P(k)|, |P(k)| and |P(k) & A(k)| = sum over p in P(k) of
    # (|p & any ground truth| - |p & k|)
    intersection = np.bincount(pair_gt, weights=overlap, minlength=num_gt)
    covering = np.bincount(pair_gt, weights=pred_size[pair_pred], minlength=num_gt)
    on_others = np.bincount(pair_gt, weights=pred_on_gt[pair_pred],
                            minlength=num_gt) - intersection
    union = gt_size + covering - intersection - on_others
    siou = intersection / union
    present = pred_size > 0  # a prediction lying only on small objects is no component
    ppv = pred_on_gt[present] / pred_size[present]
    return siou, ppv


def _check_pair(prediction_mask: np.ndarray, label: np.ndarray, what: str) -> None:
    if prediction_mask.shape != label.shape:
        raise ValueError(f'{what} {prediction_mask.shape} and label {label.shape} differ in '
                         f'size; resize one to the other first')
    if label.ndim != 2:
        raise ValueError(f'label must be a 2-D (H,W) image, got shape {label.shape}')


class ComponentMetrics:
    """SegmentMeIfYouCan's sIoU, PPV and component F1, accumulated over images.

    Holds only counts per threshold and sums of the per-component values, whatever the number
    of images. See the module docstring for the definitions.
    """

    def __init__(self, *, min_gt_size: int = 0, min_pred_size: int = 0,
                 thresholds: Sequence[float] = DEFAULT_THRESHOLDS):
        for name, size in (('min_gt_size', min_gt_size), ('min_pred_size', min_pred_size)):
            if int(size) != size or size < 0:
                raise ConfigError(f'{name} must be a whole number of pixels >= 0, got {size!r}')
        thresholds = tuple(float(t) for t in thresholds)
        if not thresholds or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise ConfigError(f'thresholds must be a non-empty sequence of values in [0, 1], '
                              f'got {thresholds!r}')
        self.min_gt_size = int(min_gt_size)
        self.min_pred_size = int(min_pred_size)
        self.thresholds = thresholds
        self._tau = np.asarray(thresholds, dtype=np.float64)
        self.true_positives = np.zeros(len(thresholds), np.int64)
        self.false_negatives = np.zeros(len(thresholds), np.int64)
        self.false_positives = np.zeros(len(thresholds), np.int64)
        self.siou_sum = 0.0
        self.ppv_sum = 0.0
        self.num_gt_components = 0
        self.num_pred_components = 0
        self.num_images = 0

    def update(self, prediction_mask: np.ndarray, label: np.ndarray, *,
               size_scale: float = 1.0) -> None:
        """Add one image: ``prediction_mask`` bool (H,W) (or 0/1 integers), ``label`` (H,W) with
        1 = anomaly, 0 = inlier, 255 = void. ``size_scale`` is the image's area over the area
        the minimum sizes are meant at (0.25 for a 2048x1024 label compared at 1024x512)."""
        prediction_mask, label = np.asarray(prediction_mask), np.asarray(label)
        _check_pair(prediction_mask, label, 'prediction mask')
        if prediction_mask.dtype != bool:
            if (not np.issubdtype(prediction_mask.dtype, np.integer)
                    or not np.isin(prediction_mask, (0, 1)).all()):
                raise ValueError(f'prediction mask must be boolean (or 0/1 integers), got '
                                 f'{prediction_mask.dtype}; threshold score maps first, e.g. '
                                 f'with component_metrics_at_threshold')
            prediction_mask = prediction_mask.astype(bool)
        siou, ppv = component_scores(prediction_mask, label,
                                     min_gt_size=scaled_size(self.min_gt_size, size_scale),
                                     min_pred_size=scaled_size(self.min_pred_size, size_scale))
        detected = siou[:, None] > self._tau[None, :]
        self.true_positives += detected.sum(axis=0)
        self.false_negatives += (~detected).sum(axis=0)
        self.false_positives += (ppv[:, None] <= self._tau[None, :]).sum(axis=0)
        self.siou_sum += float(siou.sum())
        self.ppv_sum += float(ppv.sum())
        self.num_gt_components += siou.size
        self.num_pred_components += ppv.size
        self.num_images += 1

    def compute(self) -> Dict[str, object]:
        """The metrics so far; ``f1``, ``tp``, ``fn`` and ``fp`` are lists along ``thresholds``.

        ``f1_at_0.5`` is NaN when 0.5 is not among the thresholds.
        """
        tp, fn, fp = self.true_positives, self.false_negatives, self.false_positives
        denominator = 2 * tp + fn + fp
        f1 = [2 * t / d if d > 0 else math.nan for t, d in zip(tp.tolist(), denominator.tolist())]
        nan = math.nan
        num_gt, num_pred = self.num_gt_components, self.num_pred_components
        return {'num_images': self.num_images,
                'num_gt_components': num_gt,
                'num_pred_components': num_pred,
                'siou_gt': self.siou_sum / num_gt if num_gt else nan,
                'ppv': self.ppv_sum / num_pred if num_pred else nan,
                'mean_f1': float(np.mean(f1)),
                'f1_at_0.5': f1[self.thresholds.index(0.5)] if 0.5 in self.thresholds else nan,
                'thresholds': list(self.thresholds),
                'f1': f1,
                'tp': tp.tolist(), 'fn': fn.tolist(), 'fp': fp.tolist()}


def component_metrics_at_threshold(
        score_maps_and_labels: Iterable[Tuple[np.ndarray, np.ndarray]], threshold: float,
        **kw) -> Dict[str, object]:
    """Threshold each score map (anomaly where score >= ``threshold``) and return
    :meth:`ComponentMetrics.compute` over all pairs, plus the ``threshold`` used.

    ``kw`` goes to :class:`ComponentMetrics` (``min_gt_size``, ``min_pred_size``,
    ``thresholds``).
    """
    metrics = ComponentMetrics(**kw)
    for score_map, label in score_maps_and_labels:
        score_map, label = np.asarray(score_map), np.asarray(label)
        _check_pair(score_map, label, 'score map')
        if not np.isfinite(score_map[label != IGNORE_LABEL]).all():
            raise ValueError('score map has NaN or infinite values at evaluated pixels')
        metrics.update(score_map >= threshold, label)
    return {**metrics.compute(), 'threshold': float(threshold)}
