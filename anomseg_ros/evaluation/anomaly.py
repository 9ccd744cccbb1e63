"""Anomaly evaluation of a detector on a dataset, several scorers from one forward pass, and of
score maps computed elsewhere."""
import os
import tempfile
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from anomseg_ros.data.images import resize_label
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
                     on_scores: Optional[Callable] = None,
                     progress=None) -> Dict[str, Dict[str, object]]:
    """Pool pixels over ``samples`` (``(name, rgb, label 0/1/255)``) and return, per scorer,
    AuPRC / FPR95 / AUROC, the resolution compared at and the scorer's settings. ``scorers``
    are names, or built scorers by the name to report them under (several temperatures of one
    scorer, for instance).

    ``resolution="network"`` compares at the network's input size, labels resized with PIL's
    nearest neighbour (``resize_label``: the protocol of the course code and
    ``REFERENCE.md``); ``"label"`` upsamples the scores to each label's own size, as the node
    publishes them.

    ``components`` adds SegmentMeIfYouCan's component metrics at the threshold of the best pixel
    F1 (a second pass over score maps kept on disk as float16), ``min_gt_size`` /
    ``min_pred_size`` in pixels of the label's own resolution (scaled by area when comparing at
    the network's); ``curves`` adds thinned PR / ROC points; ``operating_point`` (``tpr95`` or
    ``f1``) the threshold of that rule with the mask's TPR, FPR, precision and F1 there;
    ``mask_thresholds`` ({scorer: threshold}) the precision, recall, FPR and IoU of the
    obstacle mask at those thresholds. ``num_examples`` images worth a picture go to
    ``examples`` (see ``pick_examples``). ``on_scores(name, {scorer: score map}, size_hw)`` is
    called with each image's maps at the compared resolution (exporting them, say).
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
    want_examples = examples is not None and num_examples > 0
    keep = components or want_examples
    with tempfile.TemporaryDirectory(prefix='anomseg_scores_') as cache:
        kept = []  # (index, name, anomaly pixels, area scale label -> compared)
        for name, image, label in samples:
            if skip_without_anomaly and not (label == 1).any():
                skipped += 1
                continue
            scores, target = _score(detector, scorer_objs, image, label, resolution)
            if on_scores is not None:
                on_scores(name, scores, label.shape)
            for scorer, score in scores.items():
                metrics[scorer].update(score, target)
            if keep:
                index = len(kept)
                np.save(os.path.join(cache, f'{index}_label.npy'), target)
                for scorer, score in scores.items():
                    np.save(os.path.join(cache, f'{index}_{scorer}.npy'),
                            score.astype(np.float16))
                if want_examples:
                    rgb = image if resolution == 'label' else cv2.resize(
                        image, target.shape[::-1], interpolation=cv2.INTER_AREA)
                    cv2.imwrite(os.path.join(cache, f'{index}_rgb.jpg'), rgb[..., ::-1],
                                [cv2.IMWRITE_JPEG_QUALITY, 92])
                kept.append((index, name, int((target == 1).sum()),
                             target.size / label.size))
            if progress is not None:
                progress.update(1)
        results = {name: m.compute() for name, m in metrics.items()}
        for name, result in results.items():
            result['images_skipped_without_anomaly'] = skipped
            result['resolution'] = resolution
            scorer = scorer_objs[name]
            result['settings'] = scorer.settings()
            result['settings_text'] = scorer.describe()
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
        if want_examples:
            examples.extend(pick_examples(cache, kept, results, list(scorer_objs),
                                          num_examples))
    return results


@torch.inference_mode()
def score_image(detector, scorer_objs: Mapping[str, Scorer], image: np.ndarray,
                resolution: str = 'network', *, logits: Optional[torch.Tensor] = None,
                size_hw: Optional[Tuple[int, int]] = None) -> Dict[str, np.ndarray]:
    """Each scorer's map of one image from one forward pass: at the network's input size, or
    upsampled (bilinear) to ``size_hw`` (default the image's) with ``resolution="label"``."""
    logits = detector.logits([image]) if logits is None else logits
    size_hw = tuple(size_hw or image.shape[:2])
    scores = {}
    for name, scorer in scorer_objs.items():
        score = scorer(logits)
        if resolution == 'label' and tuple(score.shape[-2:]) != size_hw:
            score = F.interpolate(score[None], size=size_hw, mode='bilinear',
                                  align_corners=False)[0]
        scores[name] = score[0].cpu().numpy()
    return scores


@torch.inference_mode()
def _score(detector, scorer_objs, image, label, resolution):
    logits = detector.logits([image])
    if resolution == 'network':
        target = resize_label(label, (logits.shape[-1], logits.shape[-2]))
    else:
        target = label
    return score_image(detector, scorer_objs, image, resolution, logits=logits,
                       size_hw=label.shape), target


def _components(cache, kept, scorer, metrics, min_gt_size, min_pred_size):
    # the threshold is taken on float32 scores; the maps were kept as float16, so compare
    # against the threshold rounded the same way
    threshold = metrics.best_f1_threshold()
    component_metrics = ComponentMetrics(min_gt_size=min_gt_size, min_pred_size=min_pred_size)
    record = {'threshold': threshold, 'threshold_rule': 'best pixel F1',
              'min_gt_size': min_gt_size, 'min_pred_size': min_pred_size}
    if not np.isfinite(threshold):
        return {**component_metrics.compute(), **record}
    threshold16 = np.float16(threshold)
    for index, _, _, scale in kept:
        label = np.load(os.path.join(cache, f'{index}_label.npy'))
        score = np.load(os.path.join(cache, f'{index}_{scorer}.npy'))
        component_metrics.update(score >= threshold16, label, size_scale=scale)
    scales = sorted({scale for *_, scale in kept})
    if scales and scales != [1.0]:
        record['size_scale'] = (f'minimum sizes are of the label resolution, scaled by '
                                f'{scales[0]:.3g} to the compared resolution'
                                if len(scales) == 1 else 'scaled per image by area')
    return {**component_metrics.compute(), **record}


def pick_examples(cache: str, kept: Sequence[tuple], results: Dict[str, dict],
                  scorers: Sequence[str], count: int) -> List[Dict[str, object]]:
    """The images worth a picture: those with the most anomaly pixels, and the one where the
    best scorer (by AuPRC) raises the most false alarms at its threshold (the obstacle mask's
    if given, else the best pixel F1's). Each is ``{"name", "why", "rgb", "label",
    "scores": {scorer: map}}`` with the best scorer and the default one (``msp`` when
    evaluated, else the first)."""
    if not kept or count <= 0:
        return []
    ranked = [s for s in scorers if results[s]['auprc'] == results[s]['auprc']]
    best = max(ranked, key=lambda s: results[s]['auprc']) if ranked else scorers[0]
    default = 'msp' if 'msp' in scorers else scorers[0]
    shown = list(dict.fromkeys([best, default]))
    threshold = picture_threshold(results[best])
    with_anomaly = sorted((k for k in kept if k[2] > 0), key=lambda k: -k[2])
    chosen = [(k, 'most anomaly pixels') for k in with_anomaly[:max(1, count - 1)]]
    if np.isfinite(threshold) and len(chosen) < len(kept):
        taken = {k[0] for k, _ in chosen}
        false_alarms = []
        for index, *_ in kept:
            if index in taken:
                continue
            label = np.load(os.path.join(cache, f'{index}_label.npy'))
            score = np.load(os.path.join(cache, f'{index}_{best}.npy'))
            false_alarms.append((int(((score >= np.float16(threshold)) & (label == 0)).sum()),
                                 index))
        if false_alarms:
            alarms, index = max(false_alarms)
            chosen.append((kept[index], f'most false alarms of {best} ({alarms} pixels)'))
    chosen = chosen[:count]
    pictures = []
    for (index, name, *_), why in chosen:
        rgb = cv2.imread(os.path.join(cache, f'{index}_rgb.jpg'), cv2.IMREAD_COLOR)
        pictures.append({'name': name, 'why': why, 'rgb': rgb[..., ::-1].copy(),
                         'label': np.load(os.path.join(cache, f'{index}_label.npy')),
                         'scores': {s: np.load(os.path.join(cache, f'{index}_{s}.npy'))
                                    .astype(np.float32) for s in shown}})
    return pictures


def picture_threshold(result: Dict[str, object]) -> float:
    """The threshold a picture's mask is drawn at: the obstacle mask's (``mask_thresholds``)
    when there is one, else the best pixel F1's of the component metrics."""
    for key in ('mask', 'components'):
        if key in result and np.isfinite(result[key].get('threshold', np.nan)):
            return float(result[key]['threshold'])
    return float('nan')


def evaluate_score_maps(samples: Iterable[Tuple[str, np.ndarray, np.ndarray]],
                        scores_dir: str, *, skip_without_anomaly: bool = False,
                        progress=None) -> Dict[str, float]:
    """AuPRC / FPR95 / AUROC of precomputed score maps ``scores_dir/<stem>.npy`` or
    ``<stem>.hdf5`` (SegmentMeIfYouCan's, ``evaluation.smiyc``), float at the label's size, so
    any method can be compared on the same pixels and protocol."""
    metrics = AnomalyMetrics()
    for name, _, label in samples:
        if skip_without_anomaly and not (label == 1).any():
            continue
        path = os.path.join(scores_dir, f'{name}.npy')
        hdf5 = os.path.join(scores_dir, f'{name}.hdf5')
        if os.path.isfile(hdf5) and not os.path.isfile(path):
            from anomseg_ros.evaluation.smiyc import read_score
            score = read_score(hdf5)
        elif not os.path.isfile(path):
            raise DatasetError(f'no score map for image {name!r}: expected {path} (or .hdf5)')
        else:
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
