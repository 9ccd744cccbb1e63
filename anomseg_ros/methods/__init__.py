"""Learned anomaly scores on top of a trained segmentation model: PEBAL (paper 004), SLEEG
(paper 003) and SynBoost (paper 002), each a registered ``Method`` (``methods/base.py``) with
its scorers. Importing this package registers them."""
from anomseg_ros.methods.base import get_method, list_methods, Method, register_method
from anomseg_ros.methods import pebal, sleeg, synboost  # noqa: F401  (register them)

__all__ = ['Method', 'get_method', 'list_methods', 'register_method']
