"""Exported models (ONNX, OpenVINO IR) and the runtimes that run them (ROS-free).

``export_model`` writes a checkpoint as ONNX or OpenVINO IR (optionally int8 by NNCF
post-training quantization), with its ``ModelInfo`` in the file's metadata; ``load_exported``
reads one back as a module the ``Detector`` runs like a PyTorch model. OpenVINO, ONNX and
ONNX Runtime are imported only when used.
"""
from anomseg_ros.runtimes.exported import (EXPORTED_SUFFIXES, is_exported, load_exported,
                                           openvino_core, RUNTIMES)
from anomseg_ros.runtimes.export import export_model, FORMATS, openvino_from_checkpoint

__all__ = ['EXPORTED_SUFFIXES', 'export_model', 'FORMATS', 'is_exported', 'load_exported',
           'openvino_core', 'openvino_from_checkpoint', 'RUNTIMES']
