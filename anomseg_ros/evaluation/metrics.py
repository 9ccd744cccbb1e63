"""Dataset-level metrics that accumulate image by image in bounded memory.

Anomaly metrics (AuPRC, FPR95, AUROC) pool all pixels of all images, as the benchmarks do, but
never hold the pixels: each score is put in one of 2**20 bins by the top 20 bits of its float32
pattern (sign, exponent and 11 mantissa bits), an order-preserving histogram with a relative bin
width of 2**-11 over any range of scores (16 MiB in all). Scores in the same bin count as tied:
on RoadAnomaly21 with ERFNet this moves AP and FPR95 by less than 0.01 point against
scikit-learn. What the bins cannot resolve is a spread of scores far below 1e-3 of their magnitude
(say 1000 +- 0.1); shift such scores towards zero first. mIoU comes from a confusion matrix.
"""
from typing import Dict, Optional, Sequence

import numpy as np

from anomseg_ros.labels import VOID_LABEL

IGNORE_LABEL = VOID_LABEL  # labels.py: the one void / ignore value
_KEY_BITS = 20
_NUM_BINS = 1 << _KEY_BITS


def _ordered_keys(scores: np.ndarray) -> np.ndarray:
    """float32 -> bin index, monotonic in the score (negative scores included)."""
    bits = np.ascontiguousarray(scores, dtype=np.float32).view(np.uint32)
    flip = np.where(bits & np.uint32(0x80000000), np.uint32(0xFFFFFFFF), np.uint32(0x80000000))
    return (bits ^ flip) >> np.uint32(32 - _KEY_BITS)


def _key_to_score(keys: np.ndarray) -> np.ndarray:
    """Lower edge of each bin as a float32 score (for reporting thresholds)."""
    ordered = keys.astype(np.uint32) << np.uint32(32 - _KEY_BITS)
    bits = np.where(ordered & np.uint32(0x80000000), ordered ^ np.uint32(0x80000000), ~ordered)
    return bits.astype(np.uint32).view(np.float32)


def _f1_curve(curves: Dict[str, np.ndarray], num_pos: int):
    """``(tp, fp, f1)`` along ``AnomalyMetrics.curves()``, as float64 arrays."""
    tp, fp = curves['tp'].astype(np.float64), curves['fp'].astype(np.float64)
    return tp, fp, 2 * tp / (tp + fp + num_pos)


class AnomalyMetrics:
    """Pixel-level AuPRC, FPR at 95% TPR and AUROC of anomaly scores against 0/1/255 labels."""

    def __init__(self, *, ignore_label: int = IGNORE_LABEL):
        self.ignore_label = ignore_label
        self.positives = np.zeros(_NUM_BINS, np.int64)
        self.negatives = np.zeros(_NUM_BINS, np.int64)
        self.num_images = 0

    def update(self, score_map: np.ndarray, label: np.ndarray) -> None:
        """Add one image: ``score_map`` float (H,W), ``label`` (H,W) with 1 = anomaly, 0 = inlier,
        ``ignore_label`` = not evaluated."""
        score_map, label = np.asarray(score_map), np.asarray(label)
        if score_map.shape != label.shape:
            raise ValueError(f'score map {score_map.shape} and label {label.shape} differ in '
                             f'size; resize one to the other first')
        valid = label != self.ignore_label
        if not np.isfinite(score_map[valid]).all():
            raise ValueError('score map has NaN or infinite values at evaluated pixels')
        keys = _ordered_keys(score_map[valid])
        is_anomaly = label[valid] == 1
        self.positives += np.bincount(keys[is_anomaly], minlength=_NUM_BINS)
        self.negatives += np.bincount(keys[~is_anomaly], minlength=_NUM_BINS)
        self.num_images += 1

    def merge(self, other: 'AnomalyMetrics') -> None:
        self.positives += other.positives
        self.negatives += other.negatives
        self.num_images += other.num_images

    def curves(self) -> Dict[str, np.ndarray]:
        """Cumulative counts over thresholds from the highest score down (as scikit-learn)."""
        used = np.flatnonzero((self.positives + self.negatives) > 0)[::-1]
        return {'tp': np.cumsum(self.positives[used]), 'fp': np.cumsum(self.negatives[used]),
                'threshold': _key_to_score(used)}

    def best_f1_threshold(self) -> float:
        """The score threshold of the best pixel-level F1 (SegmentMeIfYouCan's choice for its
        component metrics); NaN without anomaly pixels."""
        curves = self.curves()
        num_pos = int(self.positives.sum())
        if num_pos == 0 or len(curves['tp']) == 0:
            return float('nan')
        _, _, f1 = _f1_curve(curves, num_pos)
        return float(curves['threshold'][int(np.argmax(f1))])

    def operating_point(self, rule: str = 'tpr95') -> Dict[str, float]:
        """The obstacle threshold for ``rule`` and what the mask does there: ``tpr95`` is the
        highest threshold that finds 95% of the anomaly pixels, ``f1`` the best pixel F1.
        Returns threshold, tpr (recall), fpr, precision and f1; NaN without both classes."""
        curves = self.curves()
        num_pos, num_neg = int(self.positives.sum()), int(self.negatives.sum())
        if num_pos == 0 or num_neg == 0:
            return {k: float('nan') for k in ('threshold', 'tpr', 'fpr', 'precision', 'f1')}
        tp, fp, f1 = _f1_curve(curves, num_pos)
        if rule == 'f1':
            index = int(np.argmax(f1))
        elif rule == 'tpr95':
            index = min(int(np.searchsorted(tp / num_pos, 0.95, side='left')), len(tp) - 1)
        else:
            raise ValueError(f'rule must be tpr95 or f1, got {rule!r}')
        return {'threshold': float(curves['threshold'][index]),
                'tpr': float(tp[index] / num_pos), 'fpr': float(fp[index] / num_neg),
                'precision': float(tp[index] / (tp[index] + fp[index])),
                'f1': float(f1[index])}

    def at_threshold(self, threshold: float) -> Dict[str, float]:
        """The obstacle mask ``score >= threshold``: its pixel precision, recall (TPR), FPR and
        IoU with the anomaly pixels (scores are compared in the metric's float32 bins)."""
        key = int(_ordered_keys(np.array([threshold], np.float32))[0])
        tp, fp = int(self.positives[key:].sum()), int(self.negatives[key:].sum())
        num_pos, num_neg = int(self.positives.sum()), int(self.negatives.sum())
        nan = float('nan')
        return {'threshold': float(threshold),
                'precision': tp / (tp + fp) if tp + fp else nan,
                'recall': tp / num_pos if num_pos else nan,
                'fpr': fp / num_neg if num_neg else nan,
                'iou': tp / (num_pos + fp) if num_pos + fp else nan}

    def curve_points(self, *, max_points: int = 400) -> Dict[str, list]:
        """Precision-recall and ROC curves thinned to at most ``max_points`` for plotting."""
        curves = self.curves()
        num_pos, num_neg = int(self.positives.sum()), int(self.negatives.sum())
        if num_pos == 0 or num_neg == 0:
            return {}
        keep = np.unique(np.linspace(0, len(curves['tp']) - 1, max_points).astype(int))
        tp, fp = curves['tp'][keep].astype(np.float64), curves['fp'][keep].astype(np.float64)
        return {'recall': (tp / num_pos).tolist(), 'precision': (tp / (tp + fp)).tolist(),
                'fpr': (fp / num_neg).tolist(), 'threshold': curves['threshold'][keep].tolist()}

    def compute(self) -> Dict[str, float]:
        num_pos, num_neg = int(self.positives.sum()), int(self.negatives.sum())
        result = {'num_images': self.num_images, 'num_anomaly_pixels': num_pos,
                  'num_inlier_pixels': num_neg}
        if num_pos == 0 or num_neg == 0:
            nan = float('nan')
            return {**result, 'auprc': nan, 'fpr95': nan, 'fpr95_first': nan, 'auroc': nan}
        curves = self.curves()
        tp, fp = curves['tp'].astype(np.float64), curves['fp'].astype(np.float64)
        precision = tp / (tp + fp)
        recall = tp / num_pos
        # average precision as scikit-learn: sum over thresholds of (R_n - R_n-1) * P_n
        auprc = float(np.sum(np.diff(recall, prepend=0.0) * precision))
        tpr = np.concatenate([[0.0], recall])
        fpr = np.concatenate([[0.0], fp / num_neg])
        first = int(np.searchsorted(tpr, 0.95, side='left'))
        return {**result,
                'auprc': auprc,
                # FPR interpolated at TPR 0.95 on the ROC curve (the course evaluation code)
                'fpr95': float(np.interp(0.95, tpr, fpr)),
                # FPR at the first threshold whose TPR reaches 0.95 (Fishyscapes)
                'fpr95_first': float(fpr[min(first, len(fpr) - 1)]),
                'auroc': float(np.trapezoid(tpr, fpr))}


class SegmentationMetrics:
    """Confusion-matrix mIoU over ``num_classes``; pixels labelled ``ignore_label`` are skipped.

    A prediction outside the classes (void, 255) counts as a miss of the target class.
    """

    def __init__(self, num_classes: int, *, class_names: Optional[Sequence[str]] = None,
                 ignore_label: int = IGNORE_LABEL):
        self.num_classes = num_classes
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])
        self.ignore_label = ignore_label
        # rows: target class; columns: predicted class, the last one for "no class" (void)
        self.confusion = np.zeros((num_classes, num_classes + 1), np.int64)
        self.num_images = 0

    def update(self, prediction: np.ndarray, target: np.ndarray) -> None:
        prediction, target = np.asarray(prediction), np.asarray(target)
        if prediction.shape != target.shape:
            raise ValueError(f'prediction {prediction.shape} and target {target.shape} differ')
        valid = (target != self.ignore_label) & (target < self.num_classes)
        pred = np.minimum(prediction[valid].astype(np.int64), self.num_classes)
        index = target[valid].astype(np.int64) * (self.num_classes + 1) + pred
        counts = np.bincount(index, minlength=self.confusion.size)
        self.confusion += counts.reshape(self.confusion.shape)
        self.num_images += 1

    def compute(self) -> Dict[str, object]:
        true_positive = np.diag(self.confusion[:, :self.num_classes]).astype(np.float64)
        gt_total = self.confusion.sum(axis=1)
        union = gt_total + self.confusion[:, :self.num_classes].sum(axis=0) - true_positive
        with np.errstate(divide='ignore', invalid='ignore'):
            iou = np.where(union > 0, true_positive / union, np.nan)
        present = union > 0  # as mmsegmentation: classes neither seen nor predicted are left out
        return {'num_images': self.num_images,
                'miou': float(np.nanmean(iou[present])) if present.any() else float('nan'),
                'pixel_accuracy': float(true_positive.sum() / max(gt_total.sum(), 1)),
                'per_class_iou': {name: float(v) for name, v in zip(self.class_names, iou)}}


class ScoreDistribution:
    """The scores of all pixels (no labels), in ``AnomalyMetrics``' float32 bins: quantiles and
    the share at or above a threshold over any number of images, in bounded memory."""

    def __init__(self):
        self.counts = np.zeros(_NUM_BINS, np.int64)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def update(self, score_map: np.ndarray) -> None:
        scores = np.asarray(score_map, np.float32).ravel()
        scores = scores[np.isfinite(scores)]
        self.counts += np.bincount(_ordered_keys(scores), minlength=_NUM_BINS)

    def merge(self, other: 'ScoreDistribution') -> None:
        self.counts += other.counts

    def share_at_or_above(self, threshold: float) -> float:
        """The share of pixels ``score >= threshold`` (the obstacle mask's flagged share)."""
        total = self.total
        if not total:
            return float('nan')
        key = int(_ordered_keys(np.array([threshold], np.float32))[0])
        return float(self.counts[key:].sum() / total)

    def quantiles(self, levels: Sequence[float]) -> Dict[str, float]:
        """``{"q50": ..., "q99": ...}``: the lower bin edge of each quantile level."""
        total = self.total
        if not total:
            return {f'q{100 * q:g}': float('nan') for q in levels}
        cumulative = np.cumsum(self.counts)
        keys = np.searchsorted(cumulative, [q * total for q in levels], side='left')
        keys = np.minimum(keys, _NUM_BINS - 1)
        return {f'q{100 * q:g}': float(s) for q, s in zip(levels, _key_to_score(keys))}
