"""``anomseg train --data CITYSCAPES --out DIR``: train a backbone on Cityscapes."""
from anomseg_ros.training.train import add_arguments, DESCRIPTION, main, MULTI_GPU_HELP


def add_parser(verbs):
    parser = verbs.add_parser('train', help='train a backbone on Cityscapes',
                              description=DESCRIPTION, epilog=MULTI_GPU_HELP)
    add_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    return main(args)
