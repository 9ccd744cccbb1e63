"""What ``mask_region: drivable`` does to the obstacle mask: its pixel precision, recall and IoU
on labelled anomaly sets, against ``mask_region: all``, at the checkpoint's own threshold for
the scorer (``threshold: auto``, e.g. the label-free one of ``anomseg calibrate --thresholds
--unlabeled``), with the node's pipeline.

    .venv/bin/python bench/bench_mask_region.py --weights CKPT --scorer energy \\
        --data SET [--data SET ...] [--input-size 1024x512] [--limit N]

The labels' void (255) takes no part; the anomaly pixels are the positives.
"""
import argparse

import numpy as np

from anomseg_ros.cli.common import parse_size
from anomseg_ros.data.anomaly import AnomalyDataset
from anomseg_ros.obstacles import drivable_region
from anomseg_ros.pipeline import Detector


def mask_counts(detector, dataset, limit=None):
    """``{region: [tp, fp, fn]}`` over ``dataset`` for the masks of region all and drivable."""
    counts = {'all': np.zeros(3, np.int64), 'drivable': np.zeros(3, np.int64)}
    for index, (_, image, label) in enumerate(dataset):
        if limit is not None and index >= limit:
            break
        detection = detector.predict(image)
        valid, anomaly = label != 255, label == 1
        for region, mask in (('all', detection.mask),
                             ('drivable', detection.mask & drivable_region(detection.labels))):
            counts[region] += [int((mask & anomaly).sum()), int((mask & ~anomaly & valid).sum()),
                               int((~mask & anomaly).sum())]
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--weights', required=True)
    parser.add_argument('--scorer', default='energy')
    parser.add_argument('--data', action='append', required=True)
    parser.add_argument('--input-size', type=parse_size, default=None, metavar='WxH')
    parser.add_argument('--limit', type=int, default=None)
    parser.add_argument('--device', default='auto')
    args = parser.parse_args()
    detector = Detector.from_checkpoint(args.weights, scorer=args.scorer, device=args.device,
                                        input_size_hw=args.input_size)
    print(f'{detector.info.backbone} ({args.weights}), {args.scorer} at threshold '
          f'{detector.threshold:g} ({detector.threshold_source}), {detector.runtime} '
          f'{detector.precision_name}')
    print('| set | mask_region | precision | recall | IoU |')
    print('| --- | --- | --- | --- | --- |')
    for path in args.data:
        dataset = AnomalyDataset(path)
        for region, (tp, fp, fn) in mask_counts(detector, dataset, args.limit).items():
            precision = tp / max(tp + fp, 1)
            recall = tp / max(tp + fn, 1)
            iou = tp / max(tp + fp + fn, 1)
            print(f'| {dataset.name} | {region} | {100 * precision:.1f} | {100 * recall:.1f} | '
                  f'{100 * iou:.1f} |')


if __name__ == '__main__':
    main()
