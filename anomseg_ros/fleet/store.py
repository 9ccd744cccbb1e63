"""A fleet run's output folder.

- ``results.jsonl``: one line per scored bag, appended and flushed to disk as each bag
  finishes (the line is the commit: a bag whose line is not there is scored again).
- ``histograms/<bag id>.npz``: the bag's pixel histograms per scorer, written before its line,
  so pooled metrics over any set of bags come from them without a pixel kept.
- ``thumbnails/<bag id>/<stamp>.jpg``: the pictures of a bag's mined frames.
- ``pooled.json``, ``summary.md``, ``summary.png``: written at the end of every run from the
  lines of the current weights and settings.
- ``mined.jsonl``, ``mined.md``: the fleet's top frames (``fleet mine``).

A line is reused when its bag's fingerprint and its config key (weights by SHA-256, scorers,
thresholds, input size, runtime) match. Lines of other weights or settings stay in the file and
are not used; an error line is tried again on the next run.
"""
import datetime
import io
import json
import math
import os
from typing import Dict, Iterable, List, Optional

import numpy as np

from anomseg_ros.evaluation.metrics import AnomalyMetrics, ScoreDistribution

RESULTS = 'results.jsonl'
SCORED = ('ok', 'damaged')  # statuses whose numbers count


def _atomic_write(path: str, data: bytes) -> None:
    partial = f'{path}.partial'
    with open(partial, 'wb') as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def _finite(value):
    """JSON has no NaN: None stands for a number that does not exist."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class ResultStore:
    """The output folder ``out`` (made if missing, unless ``create`` is false)."""

    def __init__(self, out: str, *, create: bool = True):
        self.out = os.path.abspath(out)
        if create:
            os.makedirs(os.path.join(self.out, 'histograms'), exist_ok=True)
        self.path = os.path.join(self.out, RESULTS)
        self.unreadable_lines = 0
        self.lines = self._load()

    def _load(self) -> List[dict]:
        if not os.path.exists(self.path):
            return []
        lines = []
        with open(self.path, encoding='utf-8') as handle:
            for text in handle:
                try:
                    lines.append(json.loads(text))
                except ValueError:  # a line cut short by a power loss: that bag runs again
                    self.unreadable_lines += 1
        return lines

    def finished(self, bag: str, fingerprint: str, key: dict) -> Optional[dict]:
        """The newest scored line of ``bag`` as it is now under ``key``, or None."""
        for line in reversed(self.lines):
            if line.get('bag') == bag and line.get('fingerprint') == fingerprint and \
                    line.get('config') == key:
                return line if line.get('status') in SCORED else None
        return None

    def other_config_lines(self, key: dict) -> int:
        return sum(1 for line in self.lines if line.get('config') != key)

    def append(self, line: dict, result: Optional[dict] = None) -> dict:
        """Commit one bag: its histograms and pictures first, then its line."""
        line = dict(line, finished_at=datetime.datetime.now().astimezone().isoformat(
            timespec='seconds'))
        if result is not None and result.get('histograms'):
            arrays = {}
            for scorer, parts in result['histograms'].items():
                for part, (index, counts) in parts.items():
                    arrays[f'{scorer}|{part}|index'] = index
                    arrays[f'{scorer}|{part}|counts'] = counts
            name = os.path.join('histograms', f'{line["bag_id"]}.npz')
            buffer = io.BytesIO()
            np.savez_compressed(buffer, **arrays)
            _atomic_write(os.path.join(self.out, name), buffer.getvalue())
            line['histograms'] = name
        if result is not None and result.get('candidates'):
            folder = os.path.join('thumbnails', line['bag_id'])
            os.makedirs(os.path.join(self.out, folder), exist_ok=True)
            candidates = []
            for candidate in result['candidates']:
                name = os.path.join(folder, f'{candidate.stamp_ns}.jpg')
                _atomic_write(os.path.join(self.out, name), candidate.thumbnail)
                candidates.append({'stamp_ns': candidate.stamp_ns,
                                   'largest_obstacle_px': candidate.largest_obstacle_px,
                                   'road_flagged_share': candidate.road_flagged_share,
                                   'obstacles': candidate.obstacles, 'thumbnail': name})
            line['candidates'] = candidates
        text = json.dumps(_finite(line), sort_keys=True) + '\n'
        with open(self.path, 'a', encoding='utf-8') as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        self.lines.append(json.loads(text))
        return self.lines[-1]

    def current(self, bags: Iterable[str], key: dict) -> List[dict]:
        """The newest line under ``key`` of each of ``bags`` that has one, in their order."""
        newest = {}
        for line in self.lines:
            if line.get('config') == key:
                newest[line['bag']] = line
        return [newest[bag] for bag in bags if bag in newest]

    def histograms(self, line: dict, scorer: str):
        """``(AnomalyMetrics, ScoreDistribution)`` of one bag's line."""
        metrics, spread = AnomalyMetrics(), ScoreDistribution()
        with np.load(os.path.join(self.out, line['histograms'])) as arrays:
            for part, target in (('positives', metrics.positives),
                                 ('negatives', metrics.negatives), ('all', spread.counts)):
                target[arrays[f'{scorer}|{part}|index']] = arrays[f'{scorer}|{part}|counts']
        metrics.num_images = line.get('labelled_frames', 0)
        return metrics, spread

    def pooled(self, lines: List[dict], scorers, thresholds: Dict[str, float]) -> dict:
        """Metrics over the pixels of all labelled bags, merged from their histograms, and
        the flagged share over all bags."""
        pooled = {}
        scored = [line for line in lines if line.get('status') in SCORED and
                  line.get('histograms')]
        for scorer in scorers:
            metrics, spread = AnomalyMetrics(), ScoreDistribution()
            for line in scored:
                bag_metrics, bag_spread = self.histograms(line, scorer)
                if line.get('labelled_frames'):
                    metrics.merge(bag_metrics)
                spread.merge(bag_spread)
            entry = {'labelled_bags': sum(1 for line in scored if line.get('labelled_frames')),
                     'bags': len(scored),
                     'flagged_share': spread.share_at_or_above(thresholds[scorer])}
            if metrics.num_images:
                computed = metrics.compute()
                at = metrics.at_threshold(thresholds[scorer])
                entry.update(auprc=computed['auprc'], fpr95=computed['fpr95'],
                             auroc=computed['auroc'], labelled_frames=metrics.num_images,
                             mask_precision=at['precision'], mask_recall=at['recall'])
            pooled[scorer] = entry
        return _finite(pooled)

    def write_json(self, name: str, value) -> str:
        path = os.path.join(self.out, name)
        _atomic_write(path, (json.dumps(_finite(value), indent=2, sort_keys=True) + '\n')
                      .encode())
        return path
