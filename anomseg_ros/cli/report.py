"""``anomseg report REPORT.json --out DIR``: render a saved evaluation report again."""
import json
import os
import shutil

from anomseg_ros.errors import DatasetError
from anomseg_ros.evaluation.report import write_report


def add_parser(verbs):
    parser = verbs.add_parser(
        'report', help='render report.md and curves from a saved eval JSON',
        description='Reads the JSON that `anomseg eval --json` or `--report` wrote and writes '
        'report.md (scorers x datasets, AuPRC and FPR95, like the papers\' tables), the per '
        'dataset details and PR / ROC curves (curves need an eval run with --report).')
    parser.add_argument('reports', nargs='+', metavar='REPORT_JSON',
                        help='one or more eval reports; their datasets are merged')
    parser.add_argument('--out', required=True, help='output folder')
    parser.set_defaults(run=run)


def run(args) -> int:
    merged = None
    for path in args.reports:
        _copy_examples(os.path.dirname(os.path.abspath(path)), args.out)
        try:
            with open(path) as f:
                report = json.load(f)
        except (OSError, ValueError) as exc:
            raise DatasetError(f'{path} is not a readable eval report: {exc}') from None
        if 'results' not in report:
            raise DatasetError(f'{path} has no "results": write it with anomseg eval --json')
        if merged is None:
            merged = report
        else:
            merged['results'].update(report['results'])
    path = write_report(merged, args.out)
    print(f'report written to {os.path.abspath(path)}')
    return 0


def _copy_examples(source: str, out: str) -> None:
    """The example figures the report links, copied beside the new report.md."""
    examples = os.path.join(source, 'examples')
    if os.path.isdir(examples) and os.path.abspath(source) != os.path.abspath(out):
        shutil.copytree(examples, os.path.join(out, 'examples'), dirs_exist_ok=True)
