"""Typed errors of anomseg_ros: each message says what was wrong and what to do about it."""
import re


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


# the lines of a C++ library's error that say where it was raised, not why (OpenVINO:
# "Exception from src/inference/src/cpp/core.cpp:84:", "Check '...' failed at src/...:219:")
_WHERE = re.compile(r"^(Exception from \S+:\d+:?|Check '.*' failed at \S+:\d+:?)$")


def first_line(exc: BaseException, *, limit: int = 200, empty: str = '-') -> str:
    """The first line of ``exc``'s message that says why, at most ``limit`` characters
    (``empty`` if it has none): enough of a library's long error to say what went wrong in one
    of ours. Lines that only say where in a library's sources it was raised are skipped."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    reasons = [line for line in lines if not _WHERE.match(line)]
    return ((reasons or lines) or [empty])[0][:limit]


class NonFiniteScores(AnomsegError):
    """A score map with NaN or infinite values: no mask decision can be made from it."""


class TrainingError(AnomsegError):
    """Training cannot start or go on (bad resume state, a loss that became NaN)."""
