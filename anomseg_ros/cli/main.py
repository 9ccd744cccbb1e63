"""``anomseg``: one command line with a verb per task (``anomseg VERB --help``)."""
import argparse
import sys

from anomseg_ros import __version__
from anomseg_ros.cli import (adapt, bag, calibrate, demo, detect, evaluate, export, fleet,
                             info, report, study, synth, train, train_anomaly)
from anomseg_ros.cli.common import as_flags
from anomseg_ros.errors import AnomsegError

VERBS = (detect, info, evaluate, calibrate, report, synth, train, train_anomaly, adapt, study,
         bag, fleet, demo, export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='anomseg', description='Pixel-wise road anomaly segmentation: segment images, '
        'score anomalies, evaluate, and run the ROS 2 node.')
    parser.add_argument('--version', action='version', version=f'anomseg_ros {__version__}')
    verbs = parser.add_subparsers(dest='verb', metavar='VERB', required=True)
    for verb in VERBS:
        verb.add_parser(verbs)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except AnomsegError as exc:  # the core names option fields; say them as this verb's flags
        # (a verb whose flags are not named as the fields says which they are: option_fields)
        message = as_flags(str(exc), getattr(args, 'option_fields', None) or set(vars(args)))
        print(f'anomseg {args.verb}: error: {message}', file=sys.stderr)
        return 2
    except OSError as exc:  # a folder that cannot be written, a disk that is full, ...
        where = f' {exc.filename!r}' if exc.filename else ''
        print(f'anomseg {args.verb}: error: {exc.strerror or exc}:{where}; check the path, '
              f'its permissions and the free space', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f'anomseg {args.verb}: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
