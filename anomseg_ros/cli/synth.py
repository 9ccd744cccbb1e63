"""``anomseg synth OUT``: render the synthetic road world."""
import os

from tqdm import tqdm

from anomseg_ros.cli.common import parse_size
from anomseg_ros.data.synthetic import generate


def add_parser(verbs):
    parser = verbs.add_parser(
        'synth', help='render the synthetic road world (training data and anomaly tracks)',
        description='Writes OUT/cityscapes (leftImg8bit + gtFine labelTrainIds, the Cityscapes '
        'layout), OUT/tracks/{obstacle,anomaly,blended} (images + labels_masks, 0 inlier, '
        '1 anomaly, 255 void) and OUT/outliers (RGBA cut-outs of a family disjoint from the '
        'test anomalies). Deterministic for a seed; re-running keeps finished files.')
    parser.add_argument('out')
    parser.add_argument('--train', type=int, default=2000, help='training scenes')
    parser.add_argument('--val', type=int, default=200, help='validation scenes')
    parser.add_argument('--obstacle', type=int, default=100, help='obstacle-track images')
    parser.add_argument('--anomaly', type=int, default=100, help='anomaly-track images')
    parser.add_argument('--blended', type=int, default=100, help='blended-track images')
    parser.add_argument('--outliers', type=int, default=500, help='training outlier cut-outs')
    parser.add_argument('--size', type=parse_size, default=(512, 1024), metavar='WxH',
                        help='image size (default 1024x512)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--workers', type=int, default=min(4, os.cpu_count() or 1))
    parser.set_defaults(run=run)


def run(args) -> int:
    counts = {part: getattr(args, part) for part in
              ('train', 'val', 'obstacle', 'anomaly', 'blended', 'outliers')}
    height, width = args.size
    with tqdm(total=sum(counts.values()), unit='file', disable=None) as bar:
        tally = generate(args.out, counts, seed=args.seed, width=width, height=height,
                         workers=args.workers, progress=bar)
    print(f'{tally["written"]} written, {tally["kept"]} already there, in '
          f'{os.path.abspath(args.out)}')
    return 0
