"""Sizes and vectors as people write them ("1024x512", "0.5,0.5,0.5"), for the CLI, the study
files and ``TrainConfig``."""
from typing import Tuple

from anomseg_ros.errors import ConfigError


def parse_size(text) -> Tuple[int, int]:
    """``"1024x512"`` -> ``(512, 1024)``, (height, width); a (height, width) pair passes."""
    if isinstance(text, (tuple, list)) and len(text) == 2:
        return int(text[0]), int(text[1])
    try:
        width, height = (int(v) for v in str(text).lower().split('x'))
    except ValueError:
        raise ConfigError(f'size must be WIDTHxHEIGHT, e.g. 1024x512, got {text!r}') from None
    return height, width


def format_size(size_hw) -> str:
    """``(512, 1024)`` -> ``"1024x512"``."""
    return f'{size_hw[1]}x{size_hw[0]}'


def parse_vector(text, length: int = 3) -> Tuple[float, ...]:
    """``"0.5,0.5,0.5"`` (or a sequence) -> ``(0.5, 0.5, 0.5)``."""
    try:
        values = tuple(float(v) for v in (text.split(',') if isinstance(text, str) else text))
    except (TypeError, ValueError):
        values = ()
    if len(values) != length:
        raise ConfigError(f'expected {length} comma-separated numbers, got {text!r}')
    return values
