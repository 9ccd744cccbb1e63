"""Semantic segmentation evaluation (mIoU) of a detector."""
from typing import Dict, Iterable, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from anomseg_ros.data.images import resize_label
from anomseg_ros.evaluation.metrics import SegmentationMetrics
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
                label = resize_label(label, (w, h))
            elif prediction.shape[-2:] != label.shape:
                prediction = F.interpolate(prediction[None].float(), size=label.shape,
                                           mode='nearest')[0].to(torch.uint8)
        metrics.update(prediction[0].cpu().numpy(), label)
        if progress is not None:
            progress.update(1)
    return metrics.compute()
