"""One registry pattern for everything chosen by name (backbones, scorers)."""
from typing import Callable, Dict, Generic, List, TypeVar

from anomseg_ros.errors import UnknownNameError

T = TypeVar('T')


class Registry(Generic[T]):
    """Maps names to factories; refuses duplicates and lists valid names on a miss."""

    def __init__(self, kind: str):
        self.kind = kind
        self._factories: Dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that registers ``factory`` under ``name``."""
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f'{self.kind} {name!r} is already registered')
            self._factories[name] = factory
            return factory
        return decorator

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._factories[name]
        except KeyError:
            raise UnknownNameError(
                f'unknown {self.kind} {name!r}; valid {self.kind}s: {", ".join(self.names())}'
            ) from None

    def names(self) -> List[str]:
        return sorted(self._factories)

    def __contains__(self, name: str) -> bool:
        return name in self._factories
