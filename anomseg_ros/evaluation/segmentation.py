"""Semantic segmentation evaluation (mIoU) of a detector, and anomaly evaluation of score maps
computed elsewhere."""
import os
from typing import Dict, Iterable, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from anomseg_ros.errors import DatasetError
from anomseg_ros.evaluation.metrics import AnomalyMetrics, SegmentationMetrics
from anomseg_ros.pipeline import Detector


def evaluate_segmentation(detector: Detector, samples: Iterable[Tuple[np.ndarray, np.ndarray]],
                          *, resolution: str = 'network', progress=None) -> Dict[str, object]:
    """mIoU over ``(rgb, trainId label)`` pairs; ``resolution`` as in ``evaluate_anomaly``."""
    info = detector.info
    metrics = SegmentationMetrics(info.num_inlier_classes, class_names=info.class_names)
    for image, label in samples:
        with torch.inference_mode():
            prediction = detector.semantic(detector.logits([image]))
            if resolution == 'network':
                h, w = prediction.shape[-2:]
                label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)
            elif prediction.shape[-2:] != label.shape:
                prediction = F.interpolate(prediction[None].float(), size=label.shape,
                                           mode='nearest')[0].to(torch.uint8)
        metrics.update(prediction[0].cpu().numpy(), label)
        if progress is not None:
            progress.update(1)
    return metrics.compute()


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
