"""Learned anomaly scores on top of a trained segmentation model: PEBAL (paper 004) and SLEEG
(paper 003), each a registered ``Method`` (``methods/base.py``) with its scorer. Importing
this package registers them."""
from anomseg_ros.methods.base import get_method, list_methods, Method, register_method
from anomseg_ros.methods import pebal, sleeg  # noqa: F401  (register the methods and scorers)

__all__ = ['Method', 'get_method', 'list_methods', 'register_method']
