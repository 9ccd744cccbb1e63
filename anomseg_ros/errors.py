"""Typed errors of anomseg_ros: each message says what was wrong and what to do about it."""


class AnomsegError(Exception):
    """Base class of every error this package raises on purpose."""


class UnknownNameError(AnomsegError, KeyError):
    """A backbone, scorer or other registered name does not exist."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ''


class CheckpointError(AnomsegError):
    """A weights file is missing, unreadable, or does not fit the model."""


class ImageFormatError(AnomsegError, ValueError):
    """An image (file or ROS message) cannot be turned into an RGB array."""


class DatasetError(AnomsegError):
    """A dataset folder does not have the expected layout or a file in it cannot be read."""


class ConfigError(AnomsegError, ValueError):
    """A parameter or configuration value is out of range or of the wrong kind."""


def first_line(exc: BaseException, *, limit: int = 200, empty: str = '-') -> str:
    """The first line of ``exc``'s message, at most ``limit`` characters (``empty`` if it has
    none): enough of a library's long error to say what went wrong in one of ours."""
    return (str(exc).strip().splitlines() or [empty])[0][:limit]


class TrainingError(AnomsegError):
    """Training cannot start or go on (bad resume state, a loss that became NaN)."""
