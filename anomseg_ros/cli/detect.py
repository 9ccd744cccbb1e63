"""``anomseg detect IMAGE... --out DIR``: run the pipeline on image files."""
import os

import numpy as np
from tqdm import tqdm

from anomseg_ros.cli.common import add_model_args, build_detector, warn_if_untrained
from anomseg_ros.data.images import read_rgb, write_gray, write_rgb
from anomseg_ros.errors import ImageFormatError, NonFiniteScores
from anomseg_ros.labels import colorize
from anomseg_ros.visualize import heatmap, overlay


def add_parser(verbs):
    parser = verbs.add_parser('detect', help='segment and score image files',
                              description='Writes, per image, <stem>_labels.png (trainIds, 255 '
                              'void), <stem>_color.png, <stem>_score.npy (float32) and '
                              '<stem>_score.png (heat map), <stem>_mask.png (0/255) and '
                              '<stem>_overlay.png.')
    parser.add_argument('images', nargs='+', metavar='IMAGE')
    parser.add_argument('--out', required=True, help='output folder (created)')
    add_model_args(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    detector = build_detector(args)
    warn_if_untrained(detector)
    if detector.settings.uncalibrated:
        print(f'WARNING: {detector.settings.uncalibrated}')
    failed = []
    for path in tqdm(args.images, unit='image', disable=True if len(args.images) < 2 else None):
        try:
            image = read_rgb(path)
        except ImageFormatError as exc:
            failed.append(str(exc))
            continue
        result = detector.predict(image)
        try:
            result.check_finite(f'{path}: nothing written')
        except NonFiniteScores as exc:
            failed.append(str(exc))
            continue
        stem = os.path.join(args.out, os.path.splitext(os.path.basename(path))[0])
        write_gray(f'{stem}_labels.png', result.labels)
        write_rgb(f'{stem}_color.png', colorize(result.labels))
        np.save(f'{stem}_score.npy', result.score_map)
        write_rgb(f'{stem}_score.png', heatmap(result.score_map))
        write_gray(f'{stem}_mask.png', result.mask.astype(np.uint8) * 255)
        write_rgb(f'{stem}_overlay.png', overlay(image, result.mask))
    done = len(args.images) - len(failed)
    print(f'{done} of {len(args.images)} images written to {os.path.abspath(args.out)} '
          f'(scorer {detector.scorer.name}, threshold {detector.threshold})')
    for reason in failed:
        print(f'skipped: {reason}')
    return 1 if failed else 0
