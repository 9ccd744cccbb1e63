"""Learned anomaly scores on top of a trained segmentation model: PEBAL (paper 004) and SLEEG
(paper 003). Importing this package registers their scorers, ``pebal`` and ``sleeg``."""
from anomseg_ros.methods import pebal, sleeg  # noqa: F401  (register the scorers)
