"""Evaluation: streaming metrics and dataset evaluation loops (ROS-free)."""
from anomseg_ros.evaluation.components import ComponentMetrics
from anomseg_ros.evaluation.metrics import AnomalyMetrics, SegmentationMetrics

__all__ = ['AnomalyMetrics', 'ComponentMetrics', 'SegmentationMetrics']
