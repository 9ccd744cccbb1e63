"""Anomaly evaluation of a detector on a dataset, several scorers from one forward pass, and of
score maps computed elsewhere."""
import os
import tempfile
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from anomseg_ros.errors import DatasetError
from anomseg_ros.evaluation.components import ComponentMetrics
from anomseg_ros.evaluation.metrics import AnomalyMetrics
from anomseg_ros.pipeline import Detector, make_scorer
from anomseg_ros.scoring import Scorer

RESOLUTIONS = ('network', 'label')


def evaluate_anomaly(detector: Detector, samples: Iterable[Tuple[str, np.ndarray, np.ndarray]],
                     scorers: Union[Sequence[str], Mapping[str, Scorer]], *,
                     resolution: str = 'network',
                     skip_without_anomaly: bool = False,
                     temperature: Optional[float] = None,
                     components: bool = False, min_gt_size: int = 0, min_pred_size: int = 0,
                     curves: bool = False, operating_point: Optional[str] = None,
                     mask_thresholds: Optional[Mapping[str, float]] = None,
                     examples: Optional[List] = None,
                     num_examples: int = 0,
                     progress=None) -> Dict[str, Dict[str, object]]:
    """Pool pixels over ``samples`` (``(name, rgb, label 0/1/255)``) and return, per scorer,
    AuPRC / FPR95 / AUROC. ``scorers`` are names, or built scorers by the name to report
    them under (several temperatures of one scorer, for instance).

    ``resolution="network"`` compares at the network's input size, labels resized with nearest
    neighbour (the protocol of the course code and ``REFERENCE.md``); ``"label"`` upsamples the
    scores to each label's own size, as the node publishes them.

    ``components`` adds SegmentMeIfYouCan's component metrics at the threshold of the best pixel
    F1 (a second pass over score maps kept on disk as float16); ``curves`` adds thinned PR / ROC
    points; ``operating_point`` (``tpr95`` or ``f1``) the threshold of that rule with the
    mask's TPR, FPR, precision and F1 there; ``mask_thresholds`` ({scorer: threshold}) the
    precision, recall, FPR and IoU of the obstacle mask at those thresholds; the first
    ``num_examples`` images go to ``examples`` as ``(name, rgb, label, {scorer: score map})`` at
    the compared resolution, for pictures.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f'resolution must be one of {RESOLUTIONS}, got {resolution!r}')
    if isinstance(scorers, Mapping):
        scorer_objs = dict(scorers)
    else:
        scorer_objs = {name: make_scorer(name, detector.info, temperature=temperature)
                       for name in scorers}
    metrics = {name: AnomalyMetrics() for name in scorers}
    skipped = 0
    with tempfile.TemporaryDirectory(prefix='anomseg_scores_') as cache:
        kept = []
        for name, image, label in samples:
            if skip_without_anomaly and not (label == 1).any():
                skipped += 1
                continue
            scores, target = _score(detector, scorer_objs, image, label, resolution)
            for scorer, score in scores.items():
                metrics[scorer].update(score, target)
            if components:
                index = len(kept)
                np.save(os.path.join(cache, f'{index}_label.npy'), target)
                for scorer, score in scores.items():
                    np.save(os.path.join(cache, f'{index}_{scorer}.npy'),
                            score.astype(np.float16))
                kept.append(index)
            if examples is not None and len(examples) < num_examples:
                rgb = image if resolution == 'label' else cv2.resize(
                    image, target.shape[::-1], interpolation=cv2.INTER_AREA)
                examples.append((name, rgb, target, scores))
            if progress is not None:
                progress.update(1)
        results = {name: m.compute() for name, m in metrics.items()}
        for name, result in results.items():
            result['images_skipped_without_anomaly'] = skipped
            if curves:
                result['curve'] = metrics[name].curve_points()
            if mask_thresholds and name in mask_thresholds:
                result['mask'] = metrics[name].at_threshold(mask_thresholds[name])
            if operating_point:
                result['operating_point'] = {'rule': operating_point,
                                             **metrics[name].operating_point(operating_point)}
            if components:
                result['components'] = _components(cache, kept, name, metrics[name],
                                                   min_gt_size, min_pred_size)
    return results


@torch.inference_mode()
def _score(detector, scorer_objs, image, label, resolution):
    logits = detector.logits([image])
    scores = {}
    if resolution == 'network':
        target = cv2.resize(label, (logits.shape[-1], logits.shape[-2]),
                            interpolation=cv2.INTER_NEAREST)
    else:
        target = label
    for name, scorer in scorer_objs.items():
        score = scorer(logits)
        if resolution == 'label':
            score = F.interpolate(score[None], size=label.shape, mode='bilinear',
                                  align_corners=False)[0]
        scores[name] = score[0].cpu().numpy()
    return scores, target


def _components(cache, kept, scorer, metrics, min_gt_size, min_pred_size):
    # the threshold is taken on float32 scores; the maps were kept as float16, so compare
    # against the threshold rounded the same way
    threshold = metrics.best_f1_threshold()
    component_metrics = ComponentMetrics(min_gt_size=min_gt_size, min_pred_size=min_pred_size)
    if not np.isfinite(threshold):
        return {**component_metrics.compute(), 'threshold': threshold}
    threshold16 = np.float16(threshold)
    for index in kept:
        label = np.load(os.path.join(cache, f'{index}_label.npy'))
        score = np.load(os.path.join(cache, f'{index}_{scorer}.npy'))
        component_metrics.update(score >= threshold16, label)
    return {**component_metrics.compute(), 'threshold': threshold,
            'threshold_rule': 'best pixel F1', 'min_gt_size': min_gt_size,
            'min_pred_size': min_pred_size}


def evaluate_score_maps(samples: Iterable[Tuple[str, np.ndarray, np.ndarray]],
                        scores_dir: str, *, skip_without_anomaly: bool = False,
                        progress=None) -> Dict[str, float]:
    """AuPRC / FPR95 / AUROC of precomputed score maps ``scores_dir/<stem>.npy`` (float, the
    label's size), so any method can be compared on the same pixels and protocol."""
    metrics = AnomalyMetrics()
    for name, _, label in samples:
        if skip_without_anomaly and not (label == 1).any():
            continue
        path = os.path.join(scores_dir, f'{name}.npy')
        if not os.path.isfile(path):
            raise DatasetError(f'no score map for image {name!r}: expected {path}')
        try:
            score = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DatasetError(f'score map {path} cannot be read: {exc}') from None
        if score.shape != label.shape:
            raise DatasetError(f'score map {path} is {score.shape[::-1]} (WxH) but its label is '
                               f'{label.shape[::-1]}; write scores at the label resolution')
        metrics.update(score.astype(np.float32), label)
        if progress is not None:
            progress.update(1)
    return metrics.compute()
