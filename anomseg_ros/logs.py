"""The package's loggers (``logging``, under ``anomseg_ros``): what the core warns about, which
the node forwards to its ROS log and the command line prints."""
import logging


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` that always hands its records up to ``anomseg_ros``: in a
    process that imported ROS 2's ``launch`` (a launch file, launch_testing), new loggers are
    ``LaunchLogger``s, which do not propagate, and the package's warnings would be lost."""
    logger = logging.getLogger(name)
    logger.propagate = True
    return logger
