"""Whether two anomaly scores together beat each alone, without labels to weigh them: each
score is put on its own false-alarm scale of the user's unlabeled frames (minus its median,
over its 99.5th percentile minus its median there), and the two are summed (and their maximum
taken); AuPRC / FPR95 of each score and of both combinations on labelled sets.

    .venv/bin/python bench/fuse_scores.py --weights ADAPTED.pt --frames DIR \\
        --data SET [--data SET ...] [--scorers synboost,energy]

``--frames``: the unlabeled frames the scales are measured on (a folder or a bag with
``--topic``; every ``--every``-th one, default 2), never the scored sets. Scores at the
network's input size, as ``anomseg eval`` scores them.
"""
import argparse
import os

import numpy as np
import torch

from anomseg_ros.cli.common import add_frames_args, unlabeled_frames
from anomseg_ros.data.anomaly import AnomalyDataset
from anomseg_ros.data.images import resize_label
from anomseg_ros.evaluation.anomaly import score_image
from anomseg_ros.methods.synboost.ensemble import ranking_metrics
from anomseg_ros.pipeline import Detector, make_scorer

QUANTILE = 0.995


def scales(detector, scorers, images, stride=7):
    """``{name: (median, 99.5th percentile)}`` of each score over ``images``."""
    samples = {name: [] for name in scorers}
    with torch.inference_mode():
        for image in images:
            for name, score in score_image(detector, scorers, image).items():
                samples[name].append(score.ravel()[::stride])
    result = {}
    for name, values in samples.items():
        values = np.concatenate(values)
        result[name] = (float(np.median(values)), float(np.quantile(values, QUANTILE)))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--weights', required=True)
    add_frames_args(parser, '--frames', required=True)
    parser.set_defaults(every=2)
    parser.add_argument('--data', action='append', required=True, help='a labelled set')
    parser.add_argument('--scorers', default='synboost,energy', help='two scorers')
    parser.add_argument('--device', default='auto')
    args = parser.parse_args()
    names = args.scorers.split(',')
    if len(names) != 2:
        parser.error('--scorers takes two scorers, e.g. synboost,energy')
    detector = Detector.from_checkpoint(args.weights, scorer=names[0], device=args.device)
    scorers = {name: make_scorer(name, detector.info) for name in names}
    skipped = []
    images = [image for _, image in unlabeled_frames(args, skipped)]
    for reason in skipped:
        print(f'skipped: {reason}')
    if not images:
        parser.error(f'no readable frames in {args.frames}')
    scale = scales(detector, scorers, images)
    print(f'scales on {len(images)} frames of {args.frames}: ' + ', '.join(
        f'{name} median {m:.4g}, {100 * QUANTILE:g}th percentile {q:.4g}'
        for name, (m, q) in scale.items()))
    print('| set | score | AuPRC | FPR95 |')
    print('| --- | --- | --- | --- |')
    for data in args.data:
        maps, labels = {name: [] for name in names}, []
        with torch.inference_mode():
            for _, image, label in AnomalyDataset(data):
                scores = score_image(detector, scorers, image)
                height, width = scores[names[0]].shape
                target = resize_label(label, (width, height))
                keep = target != 255
                for name in names:
                    median, top = scale[name]
                    maps[name].append((scores[name][keep] - median) / max(top - median, 1e-12))
                labels.append(target[keep] == 1)
        truth = np.concatenate(labels)
        fused = {name: np.concatenate(maps[name]) for name in names}
        rows = dict(fused)
        rows[f'{names[0]} + {names[1]}'] = fused[names[0]] + fused[names[1]]
        rows[f'max({names[0]}, {names[1]})'] = np.maximum(fused[names[0]], fused[names[1]])
        for name, values in rows.items():
            auprc, fpr95 = ranking_metrics(values.astype(np.float32), truth)
            print(f'| {os.path.basename(os.path.normpath(data))} | {name} | {100 * auprc:.2f} | '
                  f'{100 * fpr95:.2f} |')


if __name__ == '__main__':
    main()
