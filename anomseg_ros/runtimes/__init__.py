"""Exported models (ONNX, OpenVINO IR) and the runtimes that run them (ROS-free).

``registry`` holds the runtimes (PyTorch, OpenVINO, ONNX Runtime, and any a plugin adds):
what each serves and how it loads a model for the ``Detector``. ``export_model`` writes a
checkpoint as ONNX or OpenVINO IR (optionally int8 by NNCF post-training quantization), with
its ``ModelInfo`` in the file's metadata. OpenVINO, ONNX and ONNX Runtime are imported only
when used.
"""
from anomseg_ros.runtimes.export import export_model, FORMATS, openvino_from_checkpoint
from anomseg_ros.runtimes.exported import openvino_core
from anomseg_ros.runtimes.registry import (auto_runtime, file_runtime, get_runtime,
                                           is_exported, list_runtimes, LoadRequest, Loaded,
                                           register_runtime, Runtime, runtime_choices)

__all__ = ['auto_runtime', 'export_model', 'file_runtime', 'FORMATS', 'get_runtime',
           'is_exported', 'list_runtimes', 'LoadRequest', 'Loaded', 'openvino_core',
           'openvino_from_checkpoint', 'register_runtime', 'Runtime', 'runtime_choices']
