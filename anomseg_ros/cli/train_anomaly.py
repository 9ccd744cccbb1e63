"""``anomseg train-anomaly --method pebal|sleeg``: a learned anomaly score on a checkpoint."""
from anomseg_ros.methods import train_anomaly


def add_parser(verbs):
    parser = verbs.add_parser(
        'train-anomaly', help='fine-tune PEBAL or train SLEEG on a segmentation checkpoint',
        description=train_anomaly.__doc__.split('\n\n')[0] + ' ' +
        train_anomaly.__doc__.split('\n\n')[2].replace('\n', ' '))
    train_anomaly.add_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    return train_anomaly.main(train_anomaly.resolve_defaults(args))
