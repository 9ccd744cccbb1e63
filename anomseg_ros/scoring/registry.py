"""The scorer registry: every anomaly score is built by name."""
import inspect
from typing import Callable, cast, Dict, List, Type

from anomseg_ros.errors import ConfigError
from anomseg_ros.registry import Registry
from anomseg_ros.scoring.base import Scorer

SCORERS: Registry[Callable[..., Scorer]] = Registry('scorer')
register_scorer = SCORERS.register


def create_scorer(name: str, **params) -> Scorer:
    """Build scorer ``name``; ``params`` are its keyword arguments (see ``scorer_params``)."""
    factory = SCORERS.get(name)
    accepted = scorer_params(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(f'scorer {name!r} does not take {", ".join(unknown)}; '
                          f'it takes: {", ".join(accepted) or "no parameters"}')
    scorer = factory(**params)
    scorer.name = name
    return scorer


def scorer_params(name: str) -> Dict[str, object]:
    """The keyword parameters of scorer ``name`` with their defaults."""
    signature = inspect.signature(SCORERS.get(name).__init__)
    return {p.name: p.default for p in signature.parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def scorer_class(name: str) -> Type[Scorer]:
    """The class registered as ``name``: what it declares is readable without building it."""
    return cast(Type[Scorer], SCORERS.get(name))


def scorer_method(name: str) -> str:
    """The learned method whose checkpoints scorer ``name`` needs ("" for the post-hoc ones)."""
    return getattr(scorer_class(name), 'method', '')


def list_scorers() -> List[str]:
    return SCORERS.names()
