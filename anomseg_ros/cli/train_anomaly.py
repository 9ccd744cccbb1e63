"""``anomseg train-anomaly --method pebal|sleeg|synboost``: a learned anomaly score on a
checkpoint.

The flags are made from the fields of the run (``AnomalyTrainConfig``) and of every
registered method's ``Options`` (one argument group per method), so a method's options and
defaults are written once, beside the method."""
import argparse
import dataclasses

from anomseg_ros.cli.common import add_option_fields, flag, options_from_args, say_as_flags
from anomseg_ros.errors import ConfigError
from anomseg_ros.methods import get_method, list_methods
from anomseg_ros.options import differing
from anomseg_ros.training import train_anomaly
from anomseg_ros.training.config import AnomalyTrainConfig

DESCRIPTION = (train_anomaly.__doc__.split('\n\n')[0] + ' ' +
               train_anomaly.__doc__.split('\n\n')[2].replace('\n', ' '))


def add_parser(verbs):
    parser = verbs.add_parser(
        'train-anomaly', help='fine-tune PEBAL, or train SLEEG or SynBoost, on a segmentation '
        'checkpoint',
        description=DESCRIPTION)
    add_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    return train_anomaly.train_anomaly(*from_args(args), say=say_as_flags(args))


def add_arguments(parser: argparse.ArgumentParser, *,
                  data: bool = True) -> argparse.ArgumentParser:
    """The training options; ``data=False`` leaves out ``--data`` and makes ``--method``
    optional (``anomseg adapt`` writes the data and has a default method)."""
    parser.add_argument('--method', required=data, choices=list_methods(),
                        default=None if data else 'synboost')
    add_option_fields(parser, AnomalyTrainConfig,
                      skip=('method',) + (() if data else ('data',)))
    names = {f.name for f in dataclasses.fields(AnomalyTrainConfig)}
    for name in list_methods():
        method = get_method(name)
        fields = dataclasses.fields(method.Options)
        if not fields:
            continue
        shared = names & {f.name for f in fields}
        if shared:  # one flag each: two methods' options cannot have the same name
            raise ConfigError(f'the options of method {name} ({", ".join(sorted(shared))}) '
                              f'are named as another\'s; rename them')
        names |= {f.name for f in fields}
        title = f'{name} (paper {method.paper})' if method.paper else name
        add_option_fields(parser.add_argument_group(title), method.Options)
    # the core names fields in its errors and progress lines; cli.main says them as flags
    parser.set_defaults(option_fields=frozenset(names))
    return parser


def from_args(args: argparse.Namespace, **run):
    """The run and the method's options of parsed ``add_arguments`` arguments (``run`` sets
    fields of the run the command line does not have). A flag of another method than
    ``--method`` is refused: that method's options would be ignored."""
    method = get_method(args.method)
    for name in list_methods():
        other = get_method(name).Options
        if name == args.method or other is method.Options:
            continue
        given = differing(options_from_args(other, args), other())
        if given:
            raise ConfigError(f'{", ".join(flag(n) for n in given)} is an option of '
                              f'{name}, not of {args.method}; leave it out')
    config = options_from_args(AnomalyTrainConfig, args, method=args.method, **run)
    return config, options_from_args(method.Options, args)
