"""``anomseg study STUDY.yaml``: train and compare backbones x losses x scorers x datasets."""
import os

from anomseg_ros.study import load_study, run_study


def add_parser(verbs):
    parser = verbs.add_parser(
        'study', help='run a comparison study (papers 000 / 001 tables) from a YAML file',
        description='Trains every model of the study file that has no finished checkpoint '
        '(resuming an interrupted one), evaluates mIoU and every scorer on every track, times '
        'each backbone, and writes OUT/study.md (the papers\' tables) and OUT/study.json. A '
        'rerun reuses what is done. See config/study_synthetic.yaml.')
    parser.add_argument('study', metavar='STUDY.yaml')
    parser.add_argument('--out', default=None, help='output folder (default: the file\'s out:)')
    parser.add_argument('--only', default=None, metavar='NAMES',
                        help='comma-separated model names to run (default all)')
    parser.add_argument('--no-speed', action='store_true', help='skip the timing')
    parser.add_argument('--reevaluate', action='store_true',
                        help='evaluate again even where results.json is up to date')
    parser.set_defaults(run=run)


def run(args) -> int:
    study = load_study(args.study, out=args.out)
    if args.no_speed:
        study.speed = False
    only = [n.strip() for n in args.only.split(',')] if args.only else None
    run_study(study, only=only, reevaluate=args.reevaluate)
    path = os.path.join(study.out, 'study.md')
    with open(path) as f:
        print(f.read())
    print(f'written to {os.path.abspath(path)}')
    return 0
