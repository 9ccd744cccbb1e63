"""The runtimes that run a model, registered by name (ROS-free).

A ``Runtime`` says what it serves: the exported files it reads itself (``files``), whether it
runs a PyTorch checkpoint (``checkpoints``, converting it where it must), its devices and
precisions; and it loads a model for the ``Detector`` (``load``). The Detector and the
command line choose among the registered runtimes by these facts and never by their names.
A package of others adds one (TensorRT, a CUDA graph, ...) with ``register_runtime`` on
import, or through the ``anomseg_ros.runtimes`` entry-point group (``docs/extending.md``:
"Add a runtime")::

    register_runtime(Runtime('my_runtime', load=load_mine, files=('.plan',),
                             devices=('cuda',), precisions=('fp16',)))
"""
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import torch

from anomseg_ros.checkpoint import load_model, ModelInfo
from anomseg_ros.precision import INT8
from anomseg_ros.registry import Registry

_RUNTIMES: 'Registry[Runtime]' = Registry('runtime')
FALLBACK = 'torch'  # what runs a checkpoint that no faster runtime takes


@dataclass
class LoadRequest:
    """What the Detector asks a runtime to load."""

    weights: str
    device: torch.device
    precision: str = 'fp32'  # a float precision: for int8, that of the layers left in float
    input_size_hw: Optional[Tuple[int, int]] = None
    backbone: Optional[str] = None
    int8: Optional[dict] = None  # {'calibration': source, 'max_drop': points or None}


@dataclass
class Loaded:
    """A model ready for the Detector: a module from normalised ``(B,3,H,W)`` batches to float
    logits, its ``ModelInfo`` and the warnings of loading it."""

    model: torch.nn.Module
    info: ModelInfo
    notes: List[str] = field(default_factory=list)


@dataclass
class Runtime:
    """One way to run a model, and what it serves.

    ``pytorch_module``: the loaded model is a PyTorch network the Detector puts in its fast
    layout (channels-last, bf16 with the image convolution in float32). ``own_precision``: it
    runs the file's own types, whatever precision is asked. ``auto_rank``: ``runtime auto``
    takes, for a checkpoint, the available runtime of the lowest rank (None: only when asked
    for); ``unavailable(weights)`` says why it cannot take these weights here, or ''.
    """

    name: str
    load: Callable[[LoadRequest], Loaded]
    title: str = ''
    files: Tuple[str, ...] = ()
    checkpoints: bool = False
    devices: Tuple[str, ...] = ('cpu',)
    precisions: Tuple[str, ...] = ('fp32',)
    pytorch_module: bool = False
    own_precision: bool = False
    auto_rank: Optional[int] = None
    why: str = ''  # what auto says when it takes it
    unavailable: Callable[[str], str] = lambda weights: ''

    def __post_init__(self):
        self.title = self.title or self.name
        self.files = tuple(suffix.lower() for suffix in self.files)

    def serves(self, device: torch.device) -> bool:
        return device.type in self.devices


def register_runtime(runtime: Runtime) -> Runtime:
    """Make ``runtime`` known to the Detector, the command line and the node."""
    _RUNTIMES.register(runtime.name)(runtime)
    return runtime


def get_runtime(name: str) -> Runtime:
    """The runtime called ``name``; an unknown name lists the valid ones."""
    return _RUNTIMES.get(name)


def list_runtimes() -> List[Runtime]:
    return [_RUNTIMES.get(name) for name in _RUNTIMES.names()]


def runtime_choices() -> Tuple[str, ...]:
    """What a user may ask for as ``runtime``: ``auto`` and every runtime that runs a
    checkpoint (a runtime of exported files only is taken by the file itself)."""
    return ('auto',) + tuple(r.name for r in list_runtimes() if r.checkpoints)


def file_runtime(weights) -> Optional[Runtime]:
    """The runtime that reads ``weights`` itself (an exported ``.onnx``, ``.xml``, ...), or
    None for a checkpoint."""
    if not isinstance(weights, str):
        return None
    suffix = os.path.splitext(weights)[1].lower()
    return next((r for r in list_runtimes() if suffix and suffix in r.files), None)


def is_exported(weights) -> bool:
    return file_runtime(weights) is not None


def int8_runtimes() -> List[Runtime]:
    """The runtimes that quantize a checkpoint to int8, the one ``auto`` prefers first."""
    return sorted((r for r in list_runtimes() if r.checkpoints and INT8 in r.precisions),
                  key=_rank)


def _rank(runtime: Runtime) -> float:
    """``auto``'s order: the lowest rank first, a runtime without one last."""
    return float('inf') if runtime.auto_rank is None else runtime.auto_rank


def auto_runtime(weights: str, device: torch.device) -> Tuple[Runtime, str]:
    """``(runtime, reason)`` that ``runtime: auto`` takes for a checkpoint on ``device``: the
    available runtime of the lowest ``auto_rank`` (OpenVINO on the CPU where it is installed),
    else the fallback (PyTorch), with the reason the first choice was not taken."""
    ranked = sorted((r for r in list_runtimes() if r.checkpoints and r.auto_rank is not None),
                    key=_rank)
    fallback = get_runtime(FALLBACK)
    first_reason = ''
    for runtime in ranked:
        if runtime is fallback:
            break
        if not runtime.serves(device):
            reason = (f'{fallback.title} runs the GPU' if device.type == 'cuda' else
                      f'{runtime.title} does not run on {device.type}')
        else:
            reason = runtime.unavailable(weights)
            if not reason:
                return runtime, f'auto: {runtime.why or runtime.title}'
        first_reason = first_reason or reason
    return fallback, f'auto: {first_reason or fallback.why or fallback.title}'


# -- the runtimes of the package ---------------------------------------------------------------
def _load_torch(request: LoadRequest) -> Loaded:
    model, info = load_model(request.weights, backbone=request.backbone)
    return Loaded(model, info)


def _load_openvino(request: LoadRequest) -> Loaded:
    from anomseg_ros.runtimes.export import openvino_from_checkpoint
    from anomseg_ros.runtimes.exported import load_openvino_ir
    if file_runtime(request.weights) is not None:  # an IR (its declared files), not a checkpoint
        model, info = load_openvino_ir(request.weights, precision=request.precision,
                                       input_size_hw=request.input_size_hw)
        return Loaded(model, info)
    model, info, note = openvino_from_checkpoint(
        request.weights, backbone=request.backbone, precision=request.precision,
        input_size_hw=request.input_size_hw, int8=request.int8)
    return Loaded(model, info, [note] if note else [])


def _load_onnx(request: LoadRequest) -> Loaded:
    from anomseg_ros.runtimes.exported import load_onnx
    model, info = load_onnx(request.weights)
    return Loaded(model, info)


def _openvino_unavailable(weights: str) -> str:
    if weights == 'random':
        return 'random weights are not converted'
    if importlib.util.find_spec('openvino') is None:
        return 'OpenVINO is not installed (pip install openvino for the faster CPU path)'
    return ''


register_runtime(Runtime(
    'torch', _load_torch, title='PyTorch', checkpoints=True, devices=('cpu', 'cuda'),
    precisions=('fp32', 'bf16', 'fp16'), pytorch_module=True, auto_rank=100))
register_runtime(Runtime(
    'openvino', _load_openvino, title='OpenVINO', files=('.xml',), checkpoints=True,
    precisions=('fp32', 'bf16', INT8), auto_rank=0, why='OpenVINO, the faster CPU path',
    unavailable=_openvino_unavailable))
register_runtime(Runtime('onnxruntime', _load_onnx, title='ONNX Runtime', files=('.onnx',),
                         own_precision=True))
