"""SynBoost's ensemble (paper 002 section 3.3): the dissimilarity network's probability and
the maps H, D and V averaged with weights chosen by grid search on a validation track.

The search scores each weight vector on a subsample of the validation pixels with one sort:
average precision as scikit-learn defines it and the FPR at 95% TPR interpolated on the ROC
curve, as ``evaluation.metrics`` does for the benchmarks (a test checks both against
scikit-learn)."""
import itertools
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np
import torch

from anomseg_ros.errors import ConfigError

MAP_NAMES = ('dissimilarity', 'entropy', 'distance', 'perceptual')
NUM_MAPS = len(MAP_NAMES)


def parse_weights(text) -> Tuple[float, ...]:
    """``"0.5,0.2,0.1,0.2"`` (or a sequence) to four non-negative weights summing to 1."""
    values = text.split(',') if isinstance(text, str) else list(text)
    try:
        weights = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        weights = ()
    if len(weights) != NUM_MAPS or any(not w >= 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(f'ensemble weights are {NUM_MAPS} non-negative numbers, one each for '
                          f'{", ".join(MAP_NAMES)}, e.g. "0.5,0.2,0.1,0.2"; got {text!r}')
    total = sum(weights)
    return tuple(w / total for w in weights)


def format_weights(weights: Sequence[float]) -> str:
    return ','.join(f'{w:.4g}' for w in weights)


def combine(maps: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """``(B,4,H,W)`` maps in [0, 1] (dissimilarity probability, H, D, V) to ``(B,H,W)``."""
    w = torch.tensor(weights, dtype=maps.dtype, device=maps.device).view(1, -1, 1, 1)
    return (maps * w).sum(dim=1)


def weight_grid(step: float = 0.1) -> List[Tuple[float, ...]]:
    """Every weight vector on the simplex with entries on multiples of ``step``."""
    n = int(round(1.0 / step))
    if n < 1 or abs(n * step - 1.0) > 1e-6:
        raise ConfigError(f'the grid step must divide 1 (0.1, 0.125, 0.25 ...), got {step}')
    return [tuple(k / n for k in combo) + ((n - sum(combo)) / n,)
            for combo in itertools.product(range(n + 1), repeat=NUM_MAPS - 1)
            if sum(combo) <= n]


def search_weights(maps: np.ndarray, labels: np.ndarray, *, step: float = 0.1
                   ) -> Tuple[Tuple[float, ...], Dict[str, float], List[dict]]:
    """The weights on ``weight_grid(step)`` with the best AuPRC on the pixels ``maps`` ``(N,4)``
    with ``labels`` ``(N,)`` (0 inlier, 1 anomaly); ties go to the lower FPR95, then to more
    weight on the dissimilarity network. Returns the weights, their metrics and every row."""
    if not ((labels == 1).any() and (labels == 0).any()):
        raise ConfigError('the ensemble search needs validation images with both anomaly and '
                          'inlier pixels; give an anomaly track')
    rows = []
    for weights in weight_grid(step):
        auprc, fpr95 = ranking_metrics(maps @ np.asarray(weights, dtype=np.float32), labels)
        rows.append({'weights': weights, 'auprc': auprc, 'fpr95': fpr95})
    best = max(rows, key=lambda r: (round(r['auprc'], 6), -round(r['fpr95'], 6),
                                    r['weights'][0]))
    return best['weights'], {'auprc': best['auprc'], 'fpr95': best['fpr95']}, rows


def ranking_metrics(scores: np.ndarray, labels: np.ndarray) -> Tuple[float, float]:
    """Average precision and FPR at 95% TPR of ``scores`` against binary ``labels``, tied
    scores taken together, from one sort."""
    order = np.argsort(-scores, kind='stable')
    ranked, hits = scores[order], labels[order] == 1
    last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # end of each tie group
    tp = np.cumsum(hits)[last].astype(np.float64)
    fp = (last + 1) - tp
    positives, negatives = tp[-1], fp[-1]
    recall = tp / positives
    auprc = float(np.sum(np.diff(recall, prepend=0.0) * tp / (tp + fp)))
    fpr95 = float(np.interp(0.95, np.r_[0.0, recall], np.r_[0.0, fp / negatives]))
    return auprc, fpr95


def collect_pixels(map_batches: Iterable[Tuple[torch.Tensor, np.ndarray]], *,
                   max_pixels_per_image: int = 10_000, seed: int = 0
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """Pool ``(maps (4,H,W), label (H,W))`` pairs into ``(N,4)`` / ``(N,)`` arrays of the
    labelled pixels (void dropped), a seeded random subsample of at most
    ``max_pixels_per_image`` per image so that the search stays fast."""
    rng = np.random.default_rng(seed)
    all_maps, all_labels = [], []
    for maps, label in map_batches:
        flat = maps.float().reshape(NUM_MAPS, -1).T.cpu().numpy()
        label = label.reshape(-1)
        keep = np.flatnonzero(label != 255)
        if len(keep) > max_pixels_per_image:
            keep = rng.choice(keep, max_pixels_per_image, replace=False)
        all_maps.append(flat[keep])
        all_labels.append(label[keep])
    if not all_maps:
        raise ConfigError('no validation images for the ensemble search')
    return np.concatenate(all_maps), np.concatenate(all_labels)
