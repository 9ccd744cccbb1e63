"""Running exported models: ONNX Runtime for ``.onnx``, OpenVINO for ``.xml`` (ROS-free).

Both are wrapped as ``torch.nn.Module``s taking the normalised ``(B,3,H,W)`` float batch and
returning float32 logits, so the ``Detector`` and the scorers do not care which runtime ran.
"""
import contextlib
import ctypes
import json
import os
import sys
import threading
from typing import Optional, Tuple

import numpy as np
import torch

from anomseg_ros.checkpoint import ModelInfo
from anomseg_ros.errors import CheckpointError, ConfigError

EXPORTED_SUFFIXES = ('.onnx', '.xml')
RUNTIMES = ('auto', 'torch', 'openvino')
METADATA_KEY = 'anomseg_model_info'
OPENVINO_PRECISIONS = {'fp32': 'f32', 'bf16': 'bf16', 'fp16': 'f16'}


def is_exported(path: str) -> bool:
    return isinstance(path, str) and path.lower().endswith(EXPORTED_SUFFIXES)


def cache_dir() -> str:
    """Where OpenVINO keeps compiled models, so a second start skips compiling."""
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(base, 'anomseg_ros', 'openvino')


_CORE = None
_CORE_LOCK = threading.Lock()


def openvino_core():
    """The process's one ``openvino.Core``, made on first use and kept to the end.

    OpenVINO's CPU plugin, which each Core makes for itself, points the thread's signal stack
    at memory of its own and, when it is destroyed, points it back at whatever it found there.
    Two Cores destroyed in the order they were made therefore leave the thread's signal stack
    on memory already unmapped, and the next signal Python handles there (a finished child
    process's SIGCHLD under a PyTorch DataLoader, say) kills the process with a segmentation
    fault. One Core that lives as long as the process never does that
    (test_runtimes.py checks it); for the Cores NNCF makes, see ``kept_signal_stack``."""
    global _CORE
    with _CORE_LOCK:  # two threads must not each make one, and drop one
        if _CORE is None:
            import openvino
            _CORE = openvino.Core()
    return _CORE


SS_ONSTACK = 1  # <signal.h>


class _SignalStack(ctypes.Structure):  # <signal.h>'s stack_t
    _fields_ = [('ss_sp', ctypes.c_void_p), ('ss_flags', ctypes.c_int),
                ('ss_size', ctypes.c_size_t)]


@contextlib.contextmanager
def kept_signal_stack():
    """Run the block, then give the calling thread back the signal stack it had before (see
    ``openvino_core``): for library code that makes and destroys OpenVINO Cores of its own
    (NNCF's quantization). Linux only; elsewhere it does nothing."""
    sigaltstack = getattr(ctypes.CDLL(None), 'sigaltstack', None) \
        if sys.platform.startswith('linux') else None
    if sigaltstack is None:
        yield
        return
    before = _SignalStack()
    sigaltstack(None, ctypes.byref(before))
    try:
        yield
    finally:
        before.ss_flags &= ~SS_ONSTACK  # only a flag sigaltstack reports, not one it takes
        sigaltstack(ctypes.byref(before), None)


def _info(text: Optional[str], path: str) -> ModelInfo:
    if not text:
        raise CheckpointError(f'{path!r} carries no anomseg model information in its metadata; '
                              f'export it with anomseg export, or run the original checkpoint')
    try:
        return ModelInfo.from_dict(json.loads(text), source=path)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f'the anomseg metadata of {path!r} cannot be read: {exc}') from None


class OnnxRuntimeModel(torch.nn.Module):
    """An ONNX file run by ONNX Runtime on the CPU."""

    runtime = 'onnxruntime'

    def __init__(self, path: str):
        super().__init__()
        import onnxruntime
        try:
            self.session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
        except Exception as exc:  # ORT raises its own kinds for unreadable models
            raise CheckpointError(f'{path!r} cannot be loaded by ONNX Runtime: '
                                  f'{str(exc).strip()[:300]}') from None
        self.input_name = self.session.get_inputs()[0].name
        self.batch_of_one = self.session.get_inputs()[0].shape[0] == 1  # a static export
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.info = _info(metadata.get(METADATA_KEY), path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.detach().float().contiguous().cpu().numpy()
        parts = [batch[i:i + 1] for i in range(len(batch))] if self.batch_of_one else [batch]
        logits = [self.session.run(None, {self.input_name: part})[0] for part in parts]
        return torch.from_numpy(logits[0] if len(logits) == 1 else np.concatenate(logits))


class OpenVinoModel(torch.nn.Module):
    """An OpenVINO IR compiled once for the CPU at a fixed input size (compiled models are
    cached on disk), with bf16 inference on CPUs that have it."""

    runtime = 'openvino'

    def __init__(self, path: str, *, input_size_hw: Optional[Tuple[int, int]] = None,
                 precision: str = 'fp32'):
        super().__init__()
        core = openvino_core()
        try:
            model = core.read_model(path)
        except Exception as exc:
            raise CheckpointError(f'{path!r} cannot be read by OpenVINO: '
                                  f'{str(exc).strip()[:300]}') from None
        info = model.get_rt_info([METADATA_KEY]).astype(str) \
            if model.has_rt_info([METADATA_KEY]) else None
        self.info = _info(info, path)
        height, width = input_size_hw or self.info.input_size_hw
        model.reshape([1, 3, height, width])
        os.makedirs(cache_dir(), exist_ok=True)
        core.set_property({'CACHE_DIR': cache_dir()})
        hint = OPENVINO_PRECISIONS[precision]
        self.compiled = core.compile_model(model, 'CPU', {'INFERENCE_PRECISION_HINT': hint})
        self.size_hw = (height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.size_hw:
            raise ConfigError(f'this OpenVINO model was compiled for {self.size_hw[1]}x'
                              f'{self.size_hw[0]}, got {x.shape[-1]}x{x.shape[-2]}')
        outputs = [self.compiled(image[None].float().contiguous().cpu().numpy())[0]
                   for image in x]
        # one frame (the node's case) is not copied again: 5 ms at 1024x512
        logits = outputs[0] if len(outputs) == 1 else np.concatenate(outputs)
        return torch.from_numpy(logits).float()


def load_exported(path: str, *, precision: str = 'fp32',
                  input_size_hw: Optional[Tuple[int, int]] = None):
    """``(model, ModelInfo)`` of an exported ``.onnx`` or ``.xml``, ready for the Detector.

    ``precision`` (fp32 or bf16) is OpenVINO's inference precision; ONNX Runtime runs the
    file's own types. The IRs ``anomseg export`` writes keep the convolutions on the image in
    float32 under bf16 (as the PyTorch path does), which is what keeps the scores; an IR
    written by other tools may not.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f'exported model {path!r} does not exist')
    if path.lower().endswith('.onnx'):
        model = OnnxRuntimeModel(path)
    else:
        if precision not in OPENVINO_PRECISIONS:
            raise ConfigError(f'OpenVINO on the CPU runs fp32 or bf16, not {precision!r}')
        model = OpenVinoModel(path, input_size_hw=input_size_hw, precision=precision)
    return model.eval(), model.info
