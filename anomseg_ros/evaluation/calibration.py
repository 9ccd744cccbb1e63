"""Temperature calibration of the MSP score (paper 000 section IV.A, eq. 10; paper 001 Table 2).

A grid of temperatures is scored on a validation anomaly track in one pass over the images
(each forward pass serves every temperature) and the best one by AuPRC (or FPR95 / AUROC) is
chosen; ``write_temperature`` stores it in the checkpoint's metadata, where the node and
``anomseg eval`` take it as the default temperature of ``msp``.
"""
import math
import os
from typing import Dict, Iterable, Sequence, Tuple

import numpy as np
import torch

from anomseg_ros.checkpoint import load_model, read_checkpoint, save_checkpoint
from anomseg_ros.errors import CheckpointError, ConfigError
from anomseg_ros.evaluation.anomaly import evaluate_anomaly
from anomseg_ros.pipeline import Detector
from anomseg_ros.scoring import create_scorer

# paper 000 searched 0.5 to 2 and chose 1.5; paper 001 tried 0.5, 0.75 and 1.1
DEFAULT_GRID = tuple(round(0.5 + 0.1 * i, 2) for i in range(16))
# how each metric ranks: +1 higher is better, -1 lower is better
METRICS = {'auprc': 1, 'auroc': 1, 'fpr95': -1}


def parse_grid(text: str) -> Tuple[float, ...]:
    """``"0.5:2.0:0.1"`` (start:stop:step, stop included) or ``"0.5,0.75,1.1"``."""
    try:
        if ':' in text:
            start, stop, step = (float(v) for v in text.split(':'))
            if step <= 0 or stop < start:
                raise ValueError
            count = int(math.floor((stop - start) / step + 1e-9)) + 1
            grid = tuple(round(start + i * step, 6) for i in range(count))
        else:
            grid = tuple(float(v) for v in text.split(',') if v.strip())
    except ValueError:
        grid = ()
    if not grid or any(not t > 0 for t in grid):
        raise ConfigError(f'cannot read the temperature grid {text!r}: give positive values as '
                          f'"0.5:2.0:0.1" (start:stop:step) or "0.5,0.75,1.1"')
    return grid


def choose_temperature(results: Dict[float, dict], metric: str = 'auprc') -> float:
    """The best temperature by ``metric``; ties go to the better FPR95, then to the temperature
    closest to 1 (the least change)."""
    if metric not in METRICS:
        raise ConfigError(f'unknown metric {metric!r}; choose one of {", ".join(METRICS)}')
    sign = METRICS[metric]

    def key(t):
        value = results[t][metric]
        return (-sign * value if value == value else math.inf, results[t]['fpr95'], abs(t - 1))
    return min(results, key=key)


def search_temperature(detector: Detector, samples: Iterable, grid: Sequence[float] = DEFAULT_GRID,
                       *, metric: str = 'auprc', resolution: str = 'network',
                       progress=None) -> dict:
    """Score MSP at every temperature of ``grid`` on ``samples`` (``(name, rgb, label)``);
    returns ``{"temperature": best, "metric": ..., "results": {T: metrics}}``."""
    if metric not in METRICS:
        raise ConfigError(f'unknown metric {metric!r}; choose one of {", ".join(METRICS)}')
    scorers = {f'{t:g}': create_scorer('msp', num_inlier_classes=detector.info.num_inlier_classes,
                                       temperature=t) for t in grid}
    raw = evaluate_anomaly(detector, samples, scorers, resolution=resolution, progress=progress)
    results = {t: raw[f'{t:g}'] for t in grid}
    if all(r['auprc'] != r['auprc'] for r in results.values()):
        raise ConfigError('the calibration images have no anomaly and inlier pixels to compare; '
                          'give an anomaly track with both')
    best = choose_temperature(results, metric)
    return {'temperature': best, 'metric': metric, 'resolution': resolution,
            'results': results, 'grid_edge': grid_edge(best, grid)}


def grid_edge(best: float, grid: Sequence[float]) -> str:
    """``"low"`` or ``"high"`` when ``best`` is the grid's lowest or highest temperature (the
    best may then lie outside it), else ``""``."""
    if len(set(grid)) < 2:
        return ''
    return 'low' if best == min(grid) else 'high' if best == max(grid) else ''


def wider_grid(best: float, grid: Sequence[float], edge: str) -> str:
    """A ``--grid`` that continues past the edge ``best`` sits on, as wide as the old one."""
    span = max(grid) - min(grid)
    if edge == 'high':
        start, stop = best, best + span
    else:
        start, stop = max(0.05, best - span), best
    step = (stop - start) / 10 or 0.1
    return f'{start:g}:{stop:g}:{step:.3g}'


def calibration_record(search: dict, dataset) -> dict:
    """What a checkpoint keeps of a search on ``dataset`` (an ``AnomalyDataset``): the chosen
    temperature, how it was chosen, and each temperature's AuPRC / FPR95 / AUROC."""
    return {'dataset': os.path.abspath(dataset.root), 'metric': search['metric'],
            'resolution': search['resolution'], 'images': len(dataset),
            'temperature': search['temperature'], 'grid_edge': search.get('grid_edge', ''),
            'results': {f'{t:g}': {k: r[k] for k in ('auprc', 'fpr95', 'auroc')}
                        for t, r in search['results'].items()}}


def write_temperature(source: str, destination: str, temperature: float,
                      record: dict) -> None:
    """Write the model of ``source`` to ``destination`` with ``temperature`` in its metadata
    and ``record`` (the search) under ``calibration``; other training records are kept.
    ``source`` may be a plain state dict; ``destination`` is then an anomseg_ros checkpoint."""
    if not temperature > 0 or not np.isfinite(temperature):
        raise ConfigError(f'temperature must be positive, got {temperature}')
    model, info, kept = _read_for_rewrite(source)
    info.temperature = float(temperature)
    kept['calibration'] = record
    save_checkpoint(destination, model, info, **kept)


def _read_for_rewrite(source: str):
    """``(model, info, kept)`` of ``source``: ``kept`` is every record of the checkpoint but
    the model itself (empty for a plain state dict), to be saved again beside a new info."""
    model, info = load_model(source)
    try:
        kept = {k: v for k, v in read_checkpoint(source).items()
                if k not in ('format', 'model_state', 'model_info')}
    except CheckpointError:  # a plain state dict: nothing more to keep
        kept = {}
    return model, info, kept


THRESHOLD_RULES = ('tpr95', 'f1')


def search_thresholds(detector: Detector, samples: Iterable, scorers: Sequence[str], *,
                      rule: str = 'tpr95', resolution: str = 'network', progress=None) -> dict:
    """Per scorer, the obstacle threshold of ``rule`` on ``samples`` (an anomaly track) and
    the mask's TPR / FPR / precision there: ``{scorer: {"threshold": ..., ...}}``."""
    if rule not in THRESHOLD_RULES:
        raise ConfigError(f'threshold rule must be one of {", ".join(THRESHOLD_RULES)}, got '
                          f'{rule!r}')
    raw = evaluate_anomaly(detector, samples, scorers, resolution=resolution,
                           operating_point=rule, progress=progress)
    points = {name: result['operating_point'] for name, result in raw.items()}
    if all(p['threshold'] != p['threshold'] for p in points.values()):
        raise ConfigError('the calibration images have no anomaly and inlier pixels to compare; '
                          'give an anomaly track with both')
    return points


def write_thresholds(source: str, destination: str, points: dict, record: dict) -> None:
    """Write the model of ``source`` to ``destination`` with the thresholds of ``points`` in
    its metadata (``threshold: auto`` uses them) and ``record`` under
    ``threshold_calibration``; everything else in the checkpoint is kept."""
    model, info, kept = _read_for_rewrite(source)
    info.thresholds = {**info.thresholds, **{name: float(p['threshold'])
                                             for name, p in points.items()
                                             if p['threshold'] == p['threshold']}}
    kept['threshold_calibration'] = record
    save_checkpoint(destination, model, info, **kept)


def parse_share(text) -> float:
    """``"0.5%"`` or ``0.005`` as a share in (0, 1)."""
    value = str(text).strip()
    try:
        share = float(value[:-1]) / 100 if value.endswith('%') else float(value)
    except ValueError:
        share = float('nan')
    if not 0 < share < 1:
        raise ConfigError(f'a false-alarm share is between 0 and 1 (or 0% and 100%), got '
                          f'{text!r}')
    return share


def false_alarm_thresholds(detector: Detector, images: Iterable, scorers: Sequence[str], *,
                           share: float, pixels_per_frame: int = 50_000, seed: int = 0,
                           progress=None) -> dict:
    """Per scorer, the lowest threshold at which at most ``share`` of the pixels of ordinary
    frames (``images``: RGB arrays, no labels) is flagged (``score >= threshold``): about the
    ``1 - share`` quantile of their scores at the network's resolution, above it where scores
    tie there, from up to ``pixels_per_frame`` pixels of each frame. The
    frames may hold a few real anomalies, so the share they would flag is a bound, not exact.
    ``{scorer: {"threshold", "false_alarm", "flagged", "frames"}}``."""
    from anomseg_ros.pipeline import make_scorer
    made = {name: make_scorer(name, detector.info) for name in scorers}
    samples = {name: [] for name in scorers}
    rng = np.random.default_rng(seed)
    frames = 0
    for image in images:
        logits = detector.logits([image])
        for name, scorer in made.items():
            score = scorer(logits)[0].flatten().numpy()
            if score.size > pixels_per_frame:
                score = score[rng.choice(score.size, pixels_per_frame, replace=False)]
            samples[name].append(score[np.isfinite(score)])
        frames += 1
        if progress is not None:
            progress.update(1)
    if not frames:
        raise ConfigError('no readable frames to set the operating point on')
    points = {}
    for name, parts in samples.items():
        pooled = np.sort(np.concatenate(parts))
        allowed = int(share * pooled.size)  # pixels the mask may flag
        if allowed == 0:
            threshold = float(np.nextafter(pooled[-1], np.inf))
        else:
            threshold = pooled[pooled.size - allowed]  # the allowed-th highest score
            above = np.searchsorted(pooled, threshold, side='left')
            if pooled.size - above > allowed:  # ties: the next score up
                higher = np.searchsorted(pooled, threshold, side='right')
                threshold = pooled[higher] if higher < pooled.size else \
                    np.nextafter(pooled[-1], np.inf)
            threshold = float(threshold)
        points[name] = {'threshold': threshold, 'false_alarm': share, 'frames': frames,
                        'flagged': float((pooled >= threshold).mean())}
    return points


MIN_CLASS_PIXELS = 100  # fewer pixels of a class: it takes the statistics of all pixels


def class_statistics(detector: Detector, images: Iterable, *, progress=None) -> dict:
    """The mean and standard deviation of the max logit over the pixels predicted as each
    inlier class, on ordinary frames (``images``: RGB arrays, no labels), at the network's
    resolution: what the ``sml`` scorer standardises by. A class predicted on fewer than
    ``MIN_CLASS_PIXELS`` pixels takes the statistics of all pixels (listed in ``pooled``).
    ``{"mean": [...], "std": [...], "pixels": [...], "pooled": [...], "frames": N}``."""
    classes = detector.info.num_inlier_classes
    total = torch.zeros(classes, dtype=torch.float64)
    squares = torch.zeros(classes, dtype=torch.float64)
    counts = torch.zeros(classes, dtype=torch.float64)
    frames = 0
    for image in images:
        values, predicted = detector.logits([image])[:, :classes].max(dim=1)
        values, predicted = values.flatten().double(), predicted.flatten()
        total += torch.bincount(predicted, weights=values, minlength=classes)
        squares += torch.bincount(predicted, weights=values * values, minlength=classes)
        counts += torch.bincount(predicted, minlength=classes).double()
        frames += 1
        if progress is not None:
            progress.update(1)
    if not frames:
        raise ConfigError('no readable frames to compute the class statistics on')
    pooled_mean = float(total.sum() / counts.sum())
    pooled_std = float(max(squares.sum() / counts.sum() - pooled_mean ** 2, 0.0) ** 0.5)
    mean, std, pooled = [], [], []
    for c in range(classes):
        n = float(counts[c])
        if n < MIN_CLASS_PIXELS:
            mean.append(pooled_mean)
            std.append(pooled_std)
            pooled.append(detector.info.class_names[c])
            continue
        m = float(total[c]) / n
        mean.append(m)
        std.append(max(float(squares[c]) / n - m * m, 0.0) ** 0.5)
    return {'mean': mean, 'std': std, 'pixels': [int(n) for n in counts.tolist()],
            'pooled': pooled, 'frames': frames}


def write_class_stats(source: str, destination: str, stats: dict) -> None:
    """Write the model of ``source`` to ``destination`` with ``stats`` (``class_statistics``)
    in its metadata, for the ``sml`` scorer; everything else in the checkpoint is kept."""
    model, info, kept = _read_for_rewrite(source)
    info.class_stats = dict(stats)
    save_checkpoint(destination, model, info, **kept)
