"""Options as dataclasses: each field says its default and what it means, once.

A method's ``Options`` (``methods/pebal.py`` ...) and the run of ``train_anomaly``
(``training/train_anomaly.py``) are dataclasses whose fields are made with ``option``. The
command line builds its flags from the fields (``cli/common.add_option_fields``: a field
``kernel_size`` is ``--kernel-size``, a ``bool`` defaulting to True is ``--no-NAME``), and a
checkpoint keeps ``to_plain`` of them, which ``from_plain`` reads back. Nothing here parses a
command line.
"""
import dataclasses
import typing
from typing import Any, Callable, Dict, Optional, Sequence, Type, TypeVar

from anomseg_ros.errors import ConfigError

T = TypeVar('T')


def option(default=dataclasses.MISSING, help: str = '', *, metavar: Optional[str] = None,
           choices: Optional[Sequence[str]] = None, parse: Optional[Callable] = None):
    """A dataclass field with what a user is told about it: ``help``, the ``metavar`` and
    ``choices`` of its flag, and ``parse``, which turns a string ("1024x512", "0.1,0.3") into
    the field's value (and raises an ``AnomsegError`` saying what is wrong)."""
    metadata = {'help': help, 'metavar': metavar, 'choices': choices, 'parse': parse}
    return dataclasses.field(default=default, metadata=metadata)


def field_type(cls: type, name: str) -> type:
    """The type of field ``name`` of ``cls`` without ``Optional`` (``Tuple`` as ``tuple``)."""
    kind = typing.get_type_hints(cls)[name]
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) is typing.Union and len(args) == 1:
        kind = args[0]
    return typing.get_origin(kind) or kind


def to_plain(options) -> Dict[str, object]:
    """The fields of a dataclass as plain values (tuples as lists), as checkpoints keep them."""
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(options).items()}


def from_plain(cls: Type[T], values: Dict[str, object], *, what: str = 'options') -> T:
    """``cls`` from plain values (``to_plain``'s, or strings a field's ``parse`` reads);
    unknown names are refused with the known ones."""
    fields = {f.name: f for f in dataclasses.fields(typing.cast(Any, cls))}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f'unknown {what} {", ".join(unknown)}; known: '
                          f'{", ".join(sorted(fields))}')
    out = {}
    for name, value in values.items():
        parse = fields[name].metadata.get('parse')
        if isinstance(value, str) and parse and field_type(cls, name) is not str:
            value = parse(value)
        elif isinstance(value, list) and field_type(cls, name) is tuple:
            value = tuple(value)
        out[name] = value
    return cls(**out)


def differing(options, defaults) -> Dict[str, object]:
    """The fields of ``options`` whose values differ from ``defaults``'s (the same class)."""
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)
            if getattr(options, f.name) != getattr(defaults, f.name)}
