"""``anomseg eval DATASET...``: AuPRC / FPR95 / AUROC of scorers on anomaly benchmark folders."""
import json
import os

from tqdm import tqdm

from anomseg_ros import __version__
from anomseg_ros.cli.common import add_model_args, build_detector, warn_if_untrained
from anomseg_ros.data.anomaly import AnomalyDataset, CONVENTIONS
from anomseg_ros.evaluation.anomaly import evaluate_anomaly, RESOLUTIONS
from anomseg_ros.scoring import list_scorers


def add_parser(verbs):
    parser = verbs.add_parser(
        'eval', help='evaluate scorers on anomaly benchmarks',
        description='Pools the pixels of every image of each DATASET folder (images/ + '
        'labels_masks/, labels 0 inlier, 1 anomaly, 255 void) and reports AuPRC, FPR95 and '
        'AUROC per scorer; one forward pass serves all scorers.')
    parser.add_argument('datasets', nargs='+', metavar='DATASET')
    add_model_args(parser, scorer=False)
    parser.add_argument('--scorers', default='msp,maxlogit,maxentropy',
                        help=f'comma-separated, from: {", ".join(list_scorers())}')
    parser.add_argument('--temperature', type=float, default=None)
    parser.add_argument('--resolution', choices=RESOLUTIONS, default='network',
                        help='compare at the network input size with labels resized by nearest '
                        'neighbour (the papers\' protocol), or at the label size')
    parser.add_argument('--skip-without-anomaly', action='store_true',
                        help='leave out images with no anomaly pixel (the course code does)')
    parser.add_argument('--convention', choices=sorted(CONVENTIONS), default=None,
                        help='label convention (default: from the folder name)')
    parser.add_argument('--json', default=None, metavar='FILE', help='write the report here')
    parser.set_defaults(run=run)


def run(args) -> int:
    scorers = [s.strip() for s in args.scorers.split(',') if s.strip()]
    detector = build_detector(args, scorer=scorers[0])
    warn_if_untrained(detector)
    datasets = [AnomalyDataset(path, convention=args.convention) for path in args.datasets]
    report = {'package_version': __version__, 'weights': detector.info.source,
              'backbone': detector.info.backbone,
              'input_size_wh': list(detector.input_size_hw[::-1]),
              'resolution': args.resolution, 'results': {}}
    print(f'{"dataset":<20} {"scorer":<12} {"AuPRC":>7} {"FPR95":>7} {"AUROC":>7}  (in %)')
    for dataset in datasets:
        with tqdm(total=len(dataset), desc=dataset.name, unit='image', leave=False,
                  disable=None) as bar:
            results = evaluate_anomaly(detector, dataset, scorers, resolution=args.resolution,
                                       skip_without_anomaly=args.skip_without_anomaly,
                                       temperature=args.temperature, progress=bar)
        report['results'][dataset.name] = {'path': dataset.root,
                                           'labels': dataset.describe_convention(),
                                           'scorers': results}
        for scorer, r in results.items():
            print(f'{dataset.name:<20} {scorer:<12} {100 * r["auprc"]:7.2f} '
                  f'{100 * r["fpr95"]:7.2f} {100 * r["auroc"]:7.2f}')
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=2)
        print(f'report written to {os.path.abspath(args.json)}')
    return 0
