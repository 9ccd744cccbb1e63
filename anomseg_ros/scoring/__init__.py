"""Anomaly scorers, registered by name: logits ``(B,C,H,W)`` to scores ``(B,H,W)``, higher = more
anomalous."""
from anomseg_ros.scoring.base import Scorer
from anomseg_ros.scoring.registry import create_scorer, list_scorers, register_scorer, \
    scorer_class, scorer_method, scorer_params
from anomseg_ros.scoring import classic  # noqa: F401  (registers the classic scorers)

__all__ = ['Scorer', 'create_scorer', 'list_scorers', 'register_scorer', 'scorer_class',
           'scorer_method', 'scorer_params']
