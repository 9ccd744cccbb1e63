"""The evaluation report a person reads: a Markdown table like the papers' (scorers x datasets,
AuPRC and FPR95) with the settings every row was computed with, precision-recall and ROC curves,
and labelled example figures; JSON beside it."""
import json
import os
from typing import Dict, List, Optional

import numpy as np

from anomseg_ros.evaluation.anomaly import picture_threshold

# what the component columns mean, said once under the tables
COMPONENT_NOTE = (
    'Component metrics (sIoU, PPV, mean F1 over sIoU thresholds 0.25-0.75) follow '
    'SegmentMeIfYouCan: the score threshold is the best pixel F1\'s, ground-truth objects and '
    'predicted segments smaller than the minimum sizes (pixels at the label resolution, '
    'SegmentMeIfYouCan\'s values for the track unless given) are left out.')


def percent(value) -> str:
    """A fraction as a percentage with 2 decimals, "n/a" when missing or not finite."""
    return 'n/a' if value is None or not np.isfinite(value) else f'{100 * value:.2f}'


def _resolution(report: Dict) -> str:
    resolution = report.get('resolution', '?')
    if resolution == 'network' and report.get('input_size_wh'):
        return f"network resolution ({'x'.join(map(str, report['input_size_wh']))})"
    return f'{resolution} resolution'


def markdown(report: Dict) -> str:
    """Markdown summary of an ``anomseg eval`` report."""
    anomaly = {name: entry for name, entry in report['results'].items() if 'scorers' in entry}
    lines = ['# anomseg_ros evaluation', '',
             f"- package version: {report.get('package_version', '?')}",
             f"- model: {report.get('backbone', '?')} from `{report.get('weights', '?')}`",
             f"- network input: {'x'.join(map(str, report.get('input_size_wh', ['?'])))}",
             f'- compared at: {_resolution(report)}; labels shrunk with PIL\'s nearest '
             f'neighbour; pixels of all images of a dataset pooled; label 255 ignored',
             '- AuPRC: average precision; FPR95: false positive rate at 95% true positive rate, '
             'interpolated on the ROC curve (FPR95 first: at the first threshold reaching 95%, '
             'as Fishyscapes); all in %', '']
    if anomaly:
        datasets = list(anomaly)
        scorers = list(dict.fromkeys(s for e in anomaly.values() for s in e['scorers']))
        lines += [f'## AuPRC / FPR95 at {_resolution(report)}', '',
                  '| scorer | ' + ' | '.join(f'{d} AuPRC | {d} FPR95' for d in datasets) +
                  ' | settings |',
                  '| --- |' + ' --- | --- |' * len(datasets) + ' --- |']
        for scorer in scorers:
            cells, settings = [], []
            for dataset in datasets:
                r = anomaly[dataset]['scorers'].get(scorer, {})
                cells += [percent(r.get('auprc')), percent(r.get('fpr95'))]
                settings.append(r.get('settings_text', '-'))
            text = ' / '.join(dict.fromkeys(settings))  # one text unless they differ
            lines.append(f'| {scorer} | ' + ' | '.join(cells) + f' | {text} |')
        lines += ['', '## Per dataset', '']
        for dataset, entry in anomaly.items():
            lines += _dataset_section(dataset, entry, report)
        lines += [COMPONENT_NOTE, '']
    for name, entry in report['results'].items():
        if 'segmentation' in entry:
            seg = entry['segmentation']
            lines += [f'## {name}: mIoU {percent(seg["miou"])} at '
                      f'{seg.get("resolution", report.get("resolution", "?"))} resolution', '',
                      '| class | IoU |', '| --- | --- |']
            lines += [f'| {c} | {percent(v)} |' for c, v in seg['per_class_iou'].items()]
            lines.append('')
    return '\n'.join(lines) + '\n'


def _dataset_section(dataset: str, entry: Dict, report: Dict) -> List[str]:
    scorers = entry['scorers']
    first = next(iter(scorers.values()), {})
    pixels = (first.get('num_anomaly_pixels'), first.get('num_inlier_pixels'))
    lines = [f'### {dataset}', '', f"labels: {entry.get('labels', '?')}; "
             f"path: `{entry.get('path', '?')}`"]
    if None not in pixels and sum(pixels):
        lines[-1] += (f'; {first.get("num_images", "?")} images, anomaly pixels '
                      f'{percent(pixels[0] / sum(pixels))}% of the evaluated ones')
    components = first.get('components')
    if components:
        lines[-1] += (f'; component metrics with SegmentMeIfYouCan\'s '
                      f'{components.get("track", "?")}-track minimum sizes: ground-truth '
                      f'objects {components.get("min_gt_size", "?")} px, predicted segments '
                      f'{components.get("min_pred_size", "?")} px (label resolution)')
        if components.get('size_scale'):
            lines[-1] += f', {components["size_scale"]}'
    masks = any('mask' in r for r in scorers.values())
    mask_header = ' mask threshold | mask precision | mask recall | mask IoU |'
    lines += ['', '| scorer | AuPRC | FPR95 | FPR95 first | AUROC | sIoU gt | PPV | mean F1 | '
              'component threshold |' + (mask_header if masks else ''),
              '| --- |' + ' --- |' * (8 + 4 * masks)]
    for scorer, r in scorers.items():
        c = r.get('components', {})
        threshold = c.get('threshold')
        row = (f"| {scorer} | {percent(r.get('auprc'))} | {percent(r.get('fpr95'))} | "
               f"{percent(r.get('fpr95_first'))} | {percent(r.get('auroc'))} | "
               f"{percent(c.get('siou_gt'))} | {percent(c.get('ppv'))} | "
               f"{percent(c.get('mean_f1'))} | "
               f"{'n/a' if threshold is None else f'{threshold:.4g}'} |")
        if masks:
            m = r.get('mask')
            row += (f" {m['threshold']:.4g} ({m.get('threshold_source', 'given')}) | "
                    f"{percent(m['precision'])} | {percent(m['recall'])} | "
                    f"{percent(m['iou'])} |" if m else ' n/a | n/a | n/a | n/a |')
        lines.append(row)
    settings = '; '.join(f'{s}: {r.get("settings_text", "-")}' for s, r in scorers.items())
    lines += ['', f'settings: {settings}', '',
              f'![precision-recall and ROC curves of {dataset}](curves_{_slug(dataset)}.png)',
              '']
    pictures = entry.get('examples') or []
    if pictures:
        lines += [f'#### Examples of {dataset}', '',
                  'Each figure: the image, the ground truth (anomaly red, void dark), and per '
                  'scorer its score map (one colour scale per scorer for all examples of the '
                  'dataset, colour bar beside it) and its mask at the threshold (green: found '
                  'anomaly, red: false alarm, blue: missed).', '']
        for picture in pictures:
            lines += [f'- `{picture["name"]}` ({picture["why"]}): scorers '
                      f'{", ".join(picture["scorers"])}', '',
                      f'  ![{picture["name"]}]({picture["file"]})', '']
    return lines


def _slug(name: str) -> str:
    return ''.join(c if c.isalnum() else '_' for c in name)


STYLES = ('-', '--', '-.', ':')
MARKERS = ('o', 's', '^', 'v', 'D', 'x', '+', '*')


def plot_curves(entry: Dict, path: str, title: str) -> None:
    """Precision-recall and ROC curves of every scorer of one dataset, side by side.

    Precision is drawn on a log axis down to below the anomaly prevalence (the precision of a
    random score, drawn as a dashed line): on road-obstacle sets precision stays under a few
    percent and a linear axis would flatten every curve into the bottom. Each scorer has its
    own line style and marker, so overlapping curves stay apart."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (pr, roc) = plt.subplots(1, 2, figsize=(11, 4.5))
    lowest, prevalence = 1.0, None
    for index, (scorer, r) in enumerate(entry['scorers'].items()):
        curve = r.get('curve') or {}
        if not curve:
            continue
        style = dict(linestyle=STYLES[index % len(STYLES)],
                     marker=MARKERS[index % len(MARKERS)], markevery=0.1, markersize=4,
                     linewidth=1.4)
        precision = np.asarray(curve['precision'])
        pr.plot(curve['recall'], precision, label=f"{scorer} (AuPRC {percent(r['auprc'])})",
                **style)
        roc.plot(curve['fpr'], curve['recall'],
                 label=f"{scorer} (FPR95 {percent(r['fpr95'])})", **style)
        if precision.size and (precision > 0).any():
            lowest = min(lowest, float(precision[precision > 0].min()))
        positives, negatives = r.get('num_anomaly_pixels'), r.get('num_inlier_pixels')
        if positives and negatives:
            prevalence = positives / (positives + negatives)
    if prevalence is not None:
        pr.axhline(prevalence, color='gray', linestyle='--', linewidth=1,
                   label=f'prevalence {100 * prevalence:.2f}% (random score)')
        lowest = min(lowest, prevalence)
    pr.set_yscale('log')
    pr.set(xlabel='recall', ylabel='precision (log scale)', title=f'{title}: precision-recall',
           xlim=(0, 1), ylim=(lowest / 2, 1.05))
    roc.set(xlabel='false positive rate', ylabel='true positive rate', title=f'{title}: ROC',
            xlim=(0, 1), ylim=(0, 1.02))
    roc.axhline(0.95, color='gray', linestyle=':', linewidth=1)
    for ax in (pr, roc):
        ax.grid(alpha=0.3, which='both')
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _score_ranges(pictures: List[Dict]) -> Dict[str, tuple]:
    """One colour scale per scorer over all pictures: its 1st to 99th percentile on the
    pictures' non-void pixels, so a map is comparable with the others of its scorer."""
    ranges = {}
    for scorer in dict.fromkeys(s for p in pictures for s in p['scores']):
        values = np.concatenate([p['scores'][scorer][p['label'] != 255].ravel()
                                 for p in pictures if scorer in p['scores']])
        if values.size == 0:
            values = np.zeros(1, np.float32)
        low, high = np.percentile(values, [1, 99])
        ranges[scorer] = (float(low), float(high) if high > low else float(low) + 1e-6)
    return ranges


def example_figure(picture: Dict, thresholds: Dict[str, float], ranges: Dict[str, tuple],
                   path: str, title: str) -> None:
    """One example: image and ground truth on top; per scorer its score map (shared colour
    scale, colour bar) and its mask at the threshold, hits / false alarms / misses coloured."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rgb, label = picture['rgb'], picture['label']
    scorers = list(picture['scores'])
    height, width = label.shape
    panel_w = 5.0
    panel_h = panel_w * height / width
    fig, axes = plt.subplots(1 + len(scorers), 2, squeeze=False,
                             figsize=(2 * panel_w + 1.0, (1 + len(scorers)) * (panel_h + 0.45)))
    truth = rgb.astype(np.float32)
    truth[label == 255] *= 0.35
    truth[label == 1] = 0.35 * truth[label == 1] + 0.65 * np.array([255, 0, 0])
    axes[0, 0].imshow(rgb)
    axes[0, 0].set_title(f'image {picture["name"]}', fontsize=9)
    axes[0, 1].imshow(truth.astype(np.uint8))
    axes[0, 1].set_title('ground truth: anomaly red, void dark', fontsize=9)
    for row, scorer in enumerate(scorers, start=1):
        score = picture['scores'][scorer]
        low, high = ranges[scorer]
        shown = axes[row, 0].imshow(score, cmap='inferno', vmin=low, vmax=high)
        fig.colorbar(shown, ax=axes[row, 0], fraction=0.046 * height / width + 0.01, pad=0.02)
        axes[row, 0].set_title(f'{scorer} score', fontsize=9)
        threshold = thresholds.get(scorer, float('nan'))
        axes[row, 1].imshow(_mask_picture(rgb, label, score, threshold))
        axes[row, 1].set_title(f'{scorer} mask at {threshold:.4g}: green found, red false '
                               f'alarm, blue missed' if np.isfinite(threshold)
                               else f'{scorer}: no threshold', fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90, pil_kwargs={'quality': 88})  # JPEG: photographs
    plt.close(fig)


def _mask_picture(rgb: np.ndarray, label: np.ndarray, score: np.ndarray,
                  threshold: float) -> np.ndarray:
    picture = rgb.astype(np.float32) * 0.6
    if np.isfinite(threshold):
        mask = score >= threshold
        for where, colour in ((mask & (label == 1), (0, 220, 0)),
                              (mask & (label == 0), (255, 0, 0)),
                              (~mask & (label == 1), (40, 90, 255))):
            picture[where] = 0.3 * picture[where] + 0.7 * np.array(colour)
    picture[label == 255] *= 0.5
    return picture.astype(np.uint8)


def write_report(report: Dict, out_dir: str, *,
                 examples: Optional[Dict[str, List]] = None) -> str:
    """Write report.json, report.md, curves_<dataset>.png and examples/ to ``out_dir``;
    returns the Markdown path. ``examples`` maps a dataset to the pictures
    ``evaluate_anomaly`` picked (``pick_examples``); they are drawn as figures, listed in the
    JSON and linked from the Markdown."""
    os.makedirs(out_dir, exist_ok=True)
    for dataset, pictures in (examples or {}).items():
        if not pictures:
            continue
        scorers = report['results'][dataset]['scorers']
        thresholds = {s: picture_threshold(scorers[s]) for s in scorers}
        ranges = _score_ranges(pictures)
        os.makedirs(os.path.join(out_dir, 'examples'), exist_ok=True)
        listed = []
        for picture in pictures:
            file = f'examples/{_slug(dataset)}_{_slug(picture["name"])}.jpg'
            example_figure(picture, thresholds, ranges, os.path.join(out_dir, file),
                           f'{dataset} / {picture["name"]}: {picture["why"]}')
            listed.append({'name': picture['name'], 'why': picture['why'], 'file': file,
                           'scorers': list(picture['scores'])})
        report['results'][dataset]['examples'] = listed
    with open(os.path.join(out_dir, 'report.json'), 'w') as f:
        json.dump(report, f, indent=2)
    for dataset, entry in report['results'].items():
        if 'scorers' in entry:
            plot_curves(entry, os.path.join(out_dir, f'curves_{_slug(dataset)}.png'), dataset)
    path = os.path.join(out_dir, 'report.md')
    with open(path, 'w') as f:
        f.write(markdown(report))
    return path
