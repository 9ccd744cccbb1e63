"""Anomaly evaluation of a detector on a dataset, several scorers from one forward pass."""
from typing import Dict, Iterable, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from anomseg_ros.evaluation.metrics import AnomalyMetrics
from anomseg_ros.pipeline import Detector, make_scorer

RESOLUTIONS = ('network', 'label')


def evaluate_anomaly(detector: Detector, samples: Iterable[Tuple[str, np.ndarray, np.ndarray]],
                     scorers: Sequence[str], *, resolution: str = 'network',
                     skip_without_anomaly: bool = False,
                     temperature: Optional[float] = None,
                     progress=None) -> Dict[str, Dict[str, float]]:
    """Pool pixels over ``samples`` (``(name, rgb, label 0/1/255)``) and return, per scorer,
    AuPRC / FPR95 / AUROC.

    ``resolution="network"`` compares at the network's input size, labels resized with nearest
    neighbour (the protocol of the course code and ``REFERENCE.md``); ``"label"`` upsamples the
    scores to each label's own size, as the node publishes them.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f'resolution must be one of {RESOLUTIONS}, got {resolution!r}')
    scorer_objs = {name: make_scorer(name, detector.info, temperature=temperature)
                   for name in scorers}
    metrics = {name: AnomalyMetrics() for name in scorers}
    skipped = 0
    for _, image, label in samples:
        if skip_without_anomaly and not (label == 1).any():
            skipped += 1
            continue
        with torch.inference_mode():
            logits = detector.logits([image])
            for name, scorer in scorer_objs.items():
                score = scorer(logits)
                if resolution == 'network':
                    size_wh = (score.shape[-1], score.shape[-2])
                    target = cv2.resize(label, size_wh, interpolation=cv2.INTER_NEAREST)
                else:
                    target = label
                    score = F.interpolate(score[None], size=label.shape, mode='bilinear',
                                          align_corners=False)[0]
                metrics[name].update(score[0].cpu().numpy(), target)
        if progress is not None:
            progress.update(1)
    results = {name: m.compute() for name, m in metrics.items()}
    for result in results.values():
        result['images_skipped_without_anomaly'] = skipped
    return results
