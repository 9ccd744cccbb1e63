"""``anomseg calibrate DATASET --weights CKPT``: choose the MSP temperature on a validation
anomaly track and write it into the checkpoint (paper 000 section IV.A); with ``--thresholds``,
choose every scorer's obstacle threshold there instead (the node's ``threshold: auto``); with
``--class-stats --unlabeled FRAMES``, the per-class max-logit statistics of the ``sml``
scorer."""
import itertools
import json
import os
import sys

from tqdm import tqdm

from anomseg_ros.cli.common import (add_frames_args, add_model_args, build_detector,
                                    unlabeled_frames, warn_if_untrained)
from anomseg_ros.data.anomaly import AnomalyDataset, CONVENTIONS
from anomseg_ros.errors import ConfigError
from anomseg_ros.evaluation.anomaly import RESOLUTIONS
from anomseg_ros.evaluation.calibration import (calibration_record, class_statistics, DEFAULT_GRID,
                                                false_alarm_thresholds, METRICS, parse_grid,
                                                parse_share, search_temperature, search_thresholds,
                                                THRESHOLD_RULES, wider_grid, write_class_stats,
                                                write_temperature, write_thresholds)


def add_parser(verbs):
    parser = verbs.add_parser(
        'calibrate', help='grid-search the MSP temperature on a validation track',
        description='Scores MSP with every temperature of --grid on an anomaly DATASET (images/ '
        '+ labels_masks/), in one pass over its images, and reports the best by --metric. '
        'With --out (or --in-place) the chosen temperature is written into the checkpoint\'s '
        'metadata; the node and "anomseg eval" then use it for msp unless told otherwise.')
    parser.add_argument('dataset', metavar='DATASET', nargs='*',
                        help='validation anomaly track(s), pooled; never the test track (none '
                        'with --unlabeled)')
    add_model_args(parser, scorer=False)
    parser.add_argument('--grid', type=parse_grid, default=DEFAULT_GRID, metavar='GRID',
                        help='temperatures: start:stop:step or a comma list (default '
                        '0.5:2.0:0.1, the range of paper 000)')
    parser.add_argument('--metric', choices=sorted(METRICS), default='auprc',
                        help='what "best" means (default auprc; ties go to the lower FPR95)')
    parser.add_argument('--resolution', choices=RESOLUTIONS, default='network')
    parser.add_argument('--convention', choices=sorted(CONVENTIONS), default=None)
    parser.add_argument('--out', default=None, metavar='CKPT',
                        help='write the calibrated checkpoint here')
    parser.add_argument('--in-place', action='store_true',
                        help='update the --weights checkpoint itself')
    parser.add_argument('--json', default=None, metavar='FILE', help='write the search here')
    parser.add_argument('--thresholds', action='store_true',
                        help='choose each scorer\'s obstacle threshold instead of the '
                        'temperature, by --rule, and write them for the node\'s threshold auto')
    parser.add_argument('--rule', choices=THRESHOLD_RULES, default='tpr95',
                        help='tpr95 (default): the highest threshold that finds 95%% of the '
                        'anomaly pixels; f1: the best pixel F1')
    parser.add_argument('--scorers', default='msp,temperature,maxlogit,maxentropy,energy',
                        help='scorers to choose thresholds for (comma list)')
    parser.add_argument('--class-stats', action='store_true',
                        help='with --unlabeled: the mean and spread of the max logit of each '
                        'class on ordinary frames, written for the sml scorer')
    add_frames_args(parser, '--unlabeled')
    parser.add_argument('--false-alarm', type=parse_share, default=parse_share('0.5%'),
                        metavar='SHARE', help='with --unlabeled: the share of the pixels of '
                        'ordinary frames the mask may flag, e.g. 0.5%% (default) or 0.005')
    parser.set_defaults(run=run)


def run(args) -> int:
    if args.out and args.in_place:
        raise ConfigError('give --out CKPT or --in-place, not both')
    detector = build_detector(args)
    warn_if_untrained(detector)
    if args.in_place and detector.info.source in ('', 'random'):
        raise ConfigError('--in-place needs a checkpoint file in --weights')
    if args.class_stats:
        if not args.unlabeled or args.thresholds or args.dataset:
            raise ConfigError('--class-stats computes the sml scorer\'s statistics from '
                              'unlabeled frames: give it with --unlabeled FRAMES, without '
                              '--thresholds or a DATASET')
        return _class_stats(args, detector)
    if args.unlabeled:
        if not args.thresholds or args.dataset:
            raise ConfigError('--unlabeled sets thresholds from unlabeled frames: give it with '
                              '--thresholds and no DATASET')
        return _unlabeled_thresholds(args, detector)
    if not args.dataset:
        raise ConfigError('give a validation anomaly track (DATASET), or --thresholds '
                          '--unlabeled FRAMES for an operating point without labels')
    if args.thresholds:
        return _thresholds(args, detector)
    dataset = AnomalyDataset(args.dataset[0], convention=args.convention)
    if len(args.dataset) > 1:
        raise ConfigError('the temperature is chosen on one track; pool several only with '
                          '--thresholds')
    with tqdm(total=len(dataset), desc=dataset.name, unit='image', leave=False,
              disable=None) as bar:
        search = search_temperature(detector, dataset, args.grid, metric=args.metric,
                                    resolution=args.resolution, progress=bar)
    best = search['temperature']
    print(f'MSP temperature on {dataset.name} ({len(dataset)} images, in %):')
    print(f'{"T":>6} {"AuPRC":>7} {"FPR95":>7} {"AUROC":>7}')
    for t, r in search['results'].items():
        print(f'{t:6g} {100 * r["auprc"]:7.2f} {100 * r["fpr95"]:7.2f} {100 * r["auroc"]:7.2f}'
              f'{"  <- best " + args.metric if t == best else ""}')
    if search['grid_edge']:
        print(f'WARNING: the best temperature {best:g} is the {search["grid_edge"]}est of the '
              f'grid ({min(args.grid):g}-{max(args.grid):g}), so a better one may lie outside '
              f'it; search further with --grid '
              f'{wider_grid(best, args.grid, search["grid_edge"])}', file=sys.stderr)
    record = calibration_record(search, dataset)
    destination = detector.info.source if args.in_place else args.out
    if destination:
        write_temperature(detector.info.source, destination, best, record)
        print(f'temperature {best:g} written to {destination}')
    else:
        print(f'chosen temperature {best:g}; add --out CKPT or --in-place to store it, or run '
              f'with --temperature {best:g}')
    _write_json(args.json, record)
    return 0


def _thresholds(args, detector) -> int:
    datasets = [AnomalyDataset(path, convention=args.convention) for path in args.dataset]
    scorers = [name for name in args.scorers.split(',') if name]
    total = sum(len(d) for d in datasets)
    with tqdm(total=total, unit='image', leave=False, disable=None) as bar:
        points = search_thresholds(detector, itertools.chain(*datasets), scorers,
                                   rule=args.rule, resolution=args.resolution, progress=bar)
    names = ', '.join(d.name for d in datasets)
    print(f'obstacle thresholds by {args.rule} on {names} ({total} images; TPR, FPR and '
          f'precision of the mask there, in %):')
    print(f'{"scorer":<12} {"threshold":>10} {"TPR":>7} {"FPR":>7} {"precision":>9}')
    for name, p in points.items():
        print(f'{name:<12} {p["threshold"]:10.4g} {100 * p["tpr"]:7.2f} {100 * p["fpr"]:7.2f} '
              f'{100 * p["precision"]:9.2f}')
    record = {'datasets': [os.path.abspath(d.root) for d in datasets], 'images': total,
              'rule': args.rule, 'resolution': args.resolution, 'points': points}
    return _store_thresholds(args, detector, points, record)


def _store_thresholds(args, detector, points: dict, record: dict) -> int:
    """The thresholds into the checkpoint named by ``--out`` / ``--in-place`` (or a hint how
    to store them), and the record into ``--json``."""
    destination = detector.info.source if args.in_place else args.out
    if destination:
        write_thresholds(detector.info.source, destination, points, record)
        print(f'thresholds written to {destination}; the node\'s threshold auto uses them')
    else:
        print('add --out CKPT or --in-place to store them')
    _write_json(args.json, record)
    return 0


def _unlabeled_thresholds(args, detector) -> int:
    scorers = [name for name in args.scorers.split(',') if name]
    skipped = []
    images = (image for _, image in unlabeled_frames(args, skipped, option='unlabeled'))
    with tqdm(unit='frame', leave=False, disable=None) as bar:
        points = false_alarm_thresholds(detector, images, scorers, share=args.false_alarm,
                                        progress=bar)
    for reason in skipped[:10]:
        print(f'skipped: {reason}')
    frames = next(iter(points.values()))['frames']
    print(f'obstacle thresholds flagging {100 * args.false_alarm:g}% of the pixels of '
          f'{frames} unlabeled frames of {args.unlabeled} (a bound: real anomalies among them '
          f'are flagged too):')
    print(f'{"scorer":<12} {"threshold":>10} {"flagged":>8}')
    for name, p in points.items():
        print(f'{name:<12} {p["threshold"]:10.4g} {100 * p["flagged"]:7.2f}%')
    record = {'unlabeled': os.path.abspath(args.unlabeled), 'topic': args.topic,
              'frames': frames, 'skipped': len(skipped),
              'rule': f'false-alarm {100 * args.false_alarm:g}%', 'points': points}
    return _store_thresholds(args, detector, points, record)


def _class_stats(args, detector) -> int:
    skipped = []
    images = (image for _, image in unlabeled_frames(args, skipped, option='unlabeled'))
    with tqdm(unit='frame', leave=False, disable=None) as bar:
        stats = class_statistics(detector, images, progress=bar)
    for reason in skipped[:10]:
        print(f'skipped: {reason}')
    stats['source'] = os.path.abspath(args.unlabeled)
    print(f'max logit per predicted class on {stats["frames"]} unlabeled frames of '
          f'{args.unlabeled}:')
    print(f'{"class":<14} {"mean":>8} {"std":>8} {"pixels":>10}')
    for name, m, s, n in zip(detector.info.class_names, stats['mean'], stats['std'],
                             stats['pixels']):
        print(f'{name:<14} {m:8.3f} {s:8.3f} {n:10d}'
              + ('  (too few: all pixels\' statistics)' if name in stats['pooled'] else ''))
    destination = detector.info.source if args.in_place else args.out
    if destination:
        write_class_stats(detector.info.source, destination, stats)
        print(f'class statistics written to {destination}; scorer sml uses them')
    else:
        print('add --out CKPT or --in-place to store them')
    _write_json(args.json, stats)
    return 0


def _write_json(path, record: dict) -> None:
    """The search's record as JSON at ``path`` (folders made), when one is given."""
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, 'w') as f:
            json.dump(record, f, indent=2)
