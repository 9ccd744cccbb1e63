"""The evaluation report a person reads: a Markdown table like the papers' (scorers x datasets,
AuPRC and FPR95), precision-recall and ROC curves, and example overlays; JSON beside it."""
import json
import os
from typing import Dict, List, Optional

import numpy as np

from anomseg_ros.data.images import write_rgb
from anomseg_ros.visualize import heatmap, overlay


def percent(value) -> str:
    """A fraction as a percentage with 2 decimals, "n/a" when missing or not finite."""
    return 'n/a' if value is None or not np.isfinite(value) else f'{100 * value:.2f}'


def markdown(report: Dict) -> str:
    """Markdown summary of an ``anomseg eval`` report."""
    anomaly = {name: entry for name, entry in report['results'].items() if 'scorers' in entry}
    lines = ['# anomseg_ros evaluation', '',
             f"- package version: {report.get('package_version', '?')}",
             f"- model: {report.get('backbone', '?')} from `{report.get('weights', '?')}`",
             f"- network input: {'x'.join(map(str, report.get('input_size_wh', ['?'])))}",
             f"- compared at: {report.get('resolution', '?')} resolution; pixels of all images "
             f'of a dataset pooled; label 255 ignored',
             '- AuPRC: average precision; FPR95: false positive rate at 95% true positive rate, '
             'interpolated on the ROC curve (FPR95 first: at the first threshold reaching 95%, '
             'as Fishyscapes); all in %', '']
    if anomaly:
        datasets = list(anomaly)
        scorers = list(dict.fromkeys(s for e in anomaly.values() for s in e['scorers']))
        lines += ['| scorer | ' + ' | '.join(f'{d} AuPRC | {d} FPR95' for d in datasets) + ' |',
                  '| --- |' + ' --- | --- |' * len(datasets)]
        for scorer in scorers:
            cells = []
            for dataset in datasets:
                r = anomaly[dataset]['scorers'].get(scorer, {})
                cells += [percent(r.get('auprc')), percent(r.get('fpr95'))]
            lines.append(f'| {scorer} | ' + ' | '.join(cells) + ' |')
        lines += ['', '## Per dataset', '']
        for dataset, entry in anomaly.items():
            lines += [f'### {dataset}', '', f"labels: {entry.get('labels', '?')}; "
                      f"path: `{entry.get('path', '?')}`", '',
                      '| scorer | AuPRC | FPR95 | FPR95 first | AUROC | sIoU gt | PPV | '
                      'mean F1 | component threshold |', '| --- |' + ' --- |' * 8]
            for scorer, r in entry['scorers'].items():
                c = r.get('components', {})
                threshold = c.get('threshold')
                lines.append(
                    f"| {scorer} | {percent(r.get('auprc'))} | {percent(r.get('fpr95'))} | "
                    f"{percent(r.get('fpr95_first'))} | {percent(r.get('auroc'))} | "
                    f"{percent(c.get('siou_gt'))} | {percent(c.get('ppv'))} | "
                    f"{percent(c.get('mean_f1'))} | "
                    f"{'n/a' if threshold is None else f'{threshold:.4g}'} |")
            lines += ['', f'![precision-recall](curves_{_slug(dataset)}.png)', '']
        lines += ['Component metrics (sIoU, PPV, mean F1 over thresholds 0.25-0.75) follow '
                  'SegmentMeIfYouCan, at the score threshold of the best pixel F1; minimum '
                  'component sizes as given (see `anomseg_ros/evaluation/components.py`).', '']
    for name, entry in report['results'].items():
        if 'segmentation' in entry:
            seg = entry['segmentation']
            lines += [f'## {name}: mIoU {percent(seg["miou"])}', '', '| class | IoU |',
                      '| --- | --- |']
            lines += [f'| {c} | {percent(v)} |' for c, v in seg['per_class_iou'].items()]
            lines.append('')
    return '\n'.join(lines) + '\n'


def _slug(name: str) -> str:
    return ''.join(c if c.isalnum() else '_' for c in name)


def plot_curves(entry: Dict, path: str, title: str) -> None:
    """Precision-recall and ROC curves of every scorer of one dataset, side by side."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (pr, roc) = plt.subplots(1, 2, figsize=(10, 4.2))
    for scorer, r in entry['scorers'].items():
        curve = r.get('curve') or {}
        if not curve:
            continue
        pr.plot(curve['recall'], curve['precision'],
                label=f"{scorer} (AuPRC {percent(r['auprc'])})")
        roc.plot(curve['fpr'], curve['recall'], label=f"{scorer} (FPR95 {percent(r['fpr95'])})")
    pr.set(xlabel='recall', ylabel='precision', title=f'{title}: precision-recall',
           xlim=(0, 1), ylim=(0, 1.02))
    roc.set(xlabel='false positive rate', ylabel='true positive rate', title=f'{title}: ROC',
            xlim=(0, 1), ylim=(0, 1.02))
    roc.axhline(0.95, color='gray', linestyle=':', linewidth=1)
    for ax in (pr, roc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def example_picture(rgb: np.ndarray, label: np.ndarray, score: np.ndarray,
                    threshold: Optional[float]) -> np.ndarray:
    """image | ground truth (red anomaly, grey void) | score heat map | thresholded mask."""
    truth = rgb.copy()
    truth[label == 255] = (truth[label == 255] * 0.4).astype(np.uint8)
    truth = overlay(truth, label == 1, alpha=0.7)
    mask = score >= threshold if threshold is not None and np.isfinite(threshold) else \
        np.zeros(score.shape, bool)
    return np.hstack([rgb, truth, heatmap(score), overlay(rgb, mask)])


def write_report(report: Dict, out_dir: str, *,
                 examples: Optional[Dict[str, List]] = None) -> str:
    """Write report.json, report.md, curves_<dataset>.png and examples/ to ``out_dir``;
    returns the Markdown path. ``examples`` maps a dataset to ``(name, rgb, label, {scorer:
    score})`` tuples; each is drawn with the first scorer at its component threshold."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'report.json'), 'w') as f:
        json.dump(report, f, indent=2)
    for dataset, entry in report['results'].items():
        if 'scorers' in entry:
            plot_curves(entry, os.path.join(out_dir, f'curves_{_slug(dataset)}.png'), dataset)
    for dataset, items in (examples or {}).items():
        scorers = report['results'][dataset]['scorers']
        for name, rgb, label, scores in items:
            scorer = next(iter(scores))
            threshold = scorers[scorer].get('components', {}).get('threshold')
            write_rgb(os.path.join(out_dir, 'examples', f'{_slug(dataset)}_{name}_{scorer}.png'),
                      example_picture(rgb, label, scores[scorer], threshold))
    path = os.path.join(out_dir, 'report.md')
    with open(path, 'w') as f:
        f.write(markdown(report))
    return path
