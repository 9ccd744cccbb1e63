"""One registry pattern for everything chosen by name (backbones, scorers, methods).

Packages of others extend a registry by registering on import; an installed package makes its
module imported by declaring it as an entry point of the registry's group
(``anomseg_ros.backbones``, ``anomseg_ros.scorers``, ``anomseg_ros.methods``), so its names
are known to the command line and the node without an import of the user's own::

    [project.entry-points."anomseg_ros.backbones"]
    tiny_fcn = "my_package.backbones"

The entry points are loaded once, the first time the registry is asked for its names or for a
name it does not know; one that cannot be loaded is named in a warning and skipped.
"""
import importlib.metadata
from typing import Callable, Dict, Generic, List, TypeVar

from anomseg_ros.errors import first_line, UnknownNameError
from anomseg_ros.logs import get_logger

T = TypeVar('T')
log = get_logger('anomseg_ros.plugins')


class Registry(Generic[T]):
    """Maps names to what is registered under them (a class, a factory, a ``Runtime``);
    refuses duplicates and lists valid names on a miss."""

    def __init__(self, kind: str, group: str = ''):
        self.kind = kind
        self.group = group or f'anomseg_ros.{kind}s'
        self._factories: Dict[str, T] = {}
        self._plugins_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``factory`` under ``name``."""
        def decorator(factory: T) -> T:
            if name in self._factories:
                raise ValueError(f'{self.kind} {name!r} is already registered')
            self._factories[name] = factory
            return factory
        return decorator

    def load_plugins(self) -> None:
        """Import the modules that installed packages declare in ``group`` (once)."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for entry in importlib.metadata.entry_points(group=self.group):
            try:
                entry.load()
            except Exception as exc:  # noqa: B902 - a broken plugin must not break the package
                log.warning(f'the {self.kind} plugin {entry.name!r} ({entry.value}) cannot be '
                            f'loaded and is skipped: {type(exc).__name__}: {first_line(exc)}')

    def get(self, name: str) -> T:
        if name not in self._factories:
            self.load_plugins()
        try:
            return self._factories[name]
        except KeyError:
            raise UnknownNameError(
                f'unknown {self.kind} {name!r}; valid {self.kind}s: {", ".join(self.names())}'
            ) from None

    def names(self) -> List[str]:
        self.load_plugins()
        return sorted(self._factories)

    def __contains__(self, name: str) -> bool:
        if name not in self._factories:
            self.load_plugins()
        return name in self._factories
