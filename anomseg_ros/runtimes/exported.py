"""Running exported models: ONNX Runtime for ``.onnx``, OpenVINO for ``.xml`` (ROS-free).

Both are wrapped as ``torch.nn.Module``s returning float32 logits, so the ``Detector`` and the
scorers do not care which runtime ran. They take the normalised ``(B,3,H,W)`` float batch, but
OpenVINO in float32 takes the images as they come (``takes_images``: uint8 ``(B,H,W,3)``) and
normalises them in its compiled graph.
"""
import contextlib
import ctypes
import json
import os
import sys
import threading
from typing import Optional, Tuple

import xml.etree.ElementTree as ElementTree

import numpy as np
import torch

from anomseg_ros.checkpoint import ModelInfo
from anomseg_ros.errors import CheckpointError, ConfigError, first_line
from anomseg_ros.runtimes.cache import file_sha256
from anomseg_ros.logs import get_logger

log = get_logger('anomseg_ros.runtimes')

METADATA_KEY = 'anomseg_model_info'
BIN_HASH_KEY = 'anomseg_bin_sha256'
OPENVINO_PRECISIONS = {'fp32': 'f32', 'bf16': 'bf16', 'fp16': 'f16'}


def bin_path(xml_path: str) -> str:
    """The weights file beside an OpenVINO IR's ``.xml``."""
    return os.path.splitext(xml_path)[0] + '.bin'


def recorded_bin_sha256(xml_path: str) -> Optional[str]:
    """The SHA-256 of its ``.bin`` that ``anomseg export`` recorded in an IR's ``.xml``
    (``BIN_HASH_KEY`` in the model's rt_info), or None for an IR written by other tools."""
    try:
        root = ElementTree.parse(xml_path).getroot()
    except (OSError, ElementTree.ParseError) as exc:
        raise CheckpointError(f'{xml_path!r} is not a readable OpenVINO IR: '
                              f'{first_line(exc)}') from None
    entry = root.find(f'./rt_info/{BIN_HASH_KEY}')
    return None if entry is None else entry.get('value')


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


def _info(text: Optional[str], path: str, channels=None) -> ModelInfo:
    """The ModelInfo in an exported file's metadata, checked against the ``channels`` its
    network outputs (an int, or None / a name when the file leaves them open)."""
    if not text:
        raise CheckpointError(f'{path!r} carries no anomseg model information in its metadata; '
                              f'export it with anomseg export, or run the original checkpoint')
    try:
        info = ModelInfo.from_dict(json.loads(text), source=path)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f'the anomseg metadata of {path!r} cannot be read: {exc}') from None
    info.check_outputs(path, channels if isinstance(channels, int) else None)
    return info


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
                                  f'{first_line(exc, limit=300)}') from None
        self.input_name = self.session.get_inputs()[0].name
        self.batch_of_one = self.session.get_inputs()[0].shape[0] == 1  # a static export
        metadata = self.session.get_modelmeta().custom_metadata_map
        outputs = self.session.get_outputs()[0].shape
        self.info = _info(metadata.get(METADATA_KEY), path,
                          outputs[1] if len(outputs) == 4 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.detach().float().contiguous().cpu().numpy()
        parts = [batch[i:i + 1] for i in range(len(batch))] if self.batch_of_one else [batch]
        logits = [self.session.run(None, {self.input_name: part})[0] for part in parts]
        return torch.from_numpy(logits[0] if len(logits) == 1 else np.concatenate(logits))


class OpenVinoModel(torch.nn.Module):
    """An OpenVINO IR compiled once for the CPU at a fixed input size (compiled models are
    cached on disk), with bf16 inference on CPUs that have it. With ``labels`` (default) its
    graph also gives the labels' argmax (``with_labels``), left in ``last_labels``.

    In float32 (``takes_images``) it takes the images as a camera gives them, uint8
    ``(B,H,W,3)`` RGB at its input size (``preprocessing.to_network_images``), and its graph
    scales, normalises and transposes them (``with_normalisation``): 4% of the forward pass
    at 512x256 and 1024x512 against normalising in PyTorch. In bf16 or f16 it takes the
    normalised ``(B,3,H,W)`` float batch: OpenVINO would run the normalisation in that
    precision and round the image before the convolution kept in float32 for it."""

    runtime = 'openvino'

    def __init__(self, path: str, *, input_size_hw: Optional[Tuple[int, int]] = None,
                 precision: str = 'fp32', compiled_cache: Optional[str] = None,
                 labels: bool = True):
        super().__init__()
        core = openvino_core()
        check_bin(path)
        try:
            model = core.read_model(path)
        except Exception as exc:
            raise CheckpointError(f'{path!r} cannot be read by OpenVINO: '
                                  f'{first_line(exc, limit=300)}') from None
        info = model.get_rt_info([METADATA_KEY]).astype(str) \
            if model.has_rt_info([METADATA_KEY]) else None
        channels = model.output(0).get_partial_shape()
        channels = channels[1].get_length() if channels.rank.is_static and \
            channels.rank.get_length() == 4 and channels[1].is_static else None
        self.info = _info(info, path, channels)
        height, width = input_size_hw or self.info.input_size_hw
        model.reshape([1, 3, height, width])
        self.gives_labels = labels
        if labels:
            model = with_labels(model, self.info.label_channels)
        self.takes_images = precision == 'fp32'
        if self.takes_images:
            model = with_normalisation(model, self.info.mean, self.info.std)
        # as many threads as PyTorch's (torch.set_num_threads: a fleet worker's share)
        config = {'INFERENCE_PRECISION_HINT': OPENVINO_PRECISIONS[precision],
                  'INFERENCE_NUM_THREADS': torch.get_num_threads()}
        if compiled_cache is not None:
            config['CACHE_DIR'] = compiled_cache
        try:
            self.compiled = core.compile_model(model, 'CPU', config)
        except Exception as exc:  # noqa: B902 - a damaged compiled blob: compile afresh
            if compiled_cache is None:
                raise CheckpointError(f'{path!r} cannot be compiled by OpenVINO: '
                                      f'{first_line(exc, limit=300)}') from None
            log.warning(f'compiling {path} with the cache in {compiled_cache} failed '
                        f'({first_line(exc)}): compiled without it')
            del config['CACHE_DIR']
            self.compiled = core.compile_model(model, 'CPU', config)
        self.size_hw = (height, width)

    last_labels: Optional[torch.Tensor] = None  # the argmax of the last forward (with_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.takes_images and (x.dtype != torch.uint8 or x.dim() != 4 or x.shape[-1] != 3):
            raise ConfigError(f'this OpenVINO model takes uint8 (B,H,W,3) RGB images '
                              f'(preprocessing.to_network_images), got {x.dtype} of shape '
                              f'{tuple(x.shape)}')
        size_hw = tuple(x.shape[1:3] if self.takes_images else x.shape[-2:])
        if size_hw != self.size_hw:
            raise ConfigError(f'this OpenVINO model was compiled for {self.size_hw[1]}x'
                              f'{self.size_hw[0]}, got {size_hw[1]}x{size_hw[0]}')
        images = np.ascontiguousarray(x.cpu().numpy() if self.takes_images else
                                      x.float().cpu().numpy())
        results = [self.compiled(images[index:index + 1]) for index in range(len(images))]

        def output(index):  # one frame (the node's case) is not copied again
            return results[0][index] if len(results) == 1 else \
                np.concatenate([r[index] for r in results])
        if self.gives_labels:
            self.last_labels = torch.from_numpy(output(1)[:, 0])
        return torch.from_numpy(output(0)).float()


def with_labels(model, channels: int):
    """``model`` (an ``openvino.Model`` with the logits as its one output) with a second
    output: the index of the largest of the first ``channels`` logits at each pixel (a TopK
    of 1), computed by the compiled graph for about nothing beside the forward pass, where
    PyTorch's ``max(dim=1)`` over a 1024x512 frame's logits costs a tenth of it."""
    import openvino
    import openvino.opset13 as ops
    logits = model.get_results()[0].input_value(0)
    start, stop, step, axis = (ops.constant(np.array([v], np.int64)) for v in (0, channels, 1, 1))
    top = ops.topk(ops.slice(logits, start, stop, step, axis), ops.constant(np.int64(1)), 1,
                   'max', 'none', 'i64')
    return openvino.Model([logits, top.output(1)], model.get_parameters(),
                          model.get_friendly_name())


def with_normalisation(model, mean, std):
    """``model`` (an ``openvino.Model`` taking the normalised ``(1,3,H,W)`` float batch) taking
    uint8 ``(1,H,W,3)`` RGB instead: OpenVINO's preprocessing converts it to float, takes away
    ``255 * mean`` and divides by ``255 * std``, as ``preprocessing.to_network_input`` does
    in PyTorch (logits equal to 1e-5)."""
    import openvino
    from openvino.preprocess import PrePostProcessor
    steps = PrePostProcessor(model)
    steps.input().tensor().set_element_type(openvino.Type.u8).set_layout(
        openvino.Layout('NHWC'))
    steps.input().model().set_layout(openvino.Layout('NCHW'))
    steps.input().preprocess().convert_element_type(openvino.Type.f32) \
        .mean([255.0 * value for value in mean]).scale([255.0 * value for value in std])
    return steps.build()


def check_bin(xml_path: str) -> None:
    """Refuse an IR whose ``.bin`` is not the one exported with its ``.xml`` (the hash
    ``anomseg export`` recorded): another model's weights of the same size would load and give
    garbage."""
    recorded = recorded_bin_sha256(xml_path)
    weights = bin_path(xml_path)
    if recorded is None or not os.path.isfile(weights):
        return  # an IR of other tools; OpenVINO names a missing .bin itself
    if file_sha256(weights) != recorded:
        raise CheckpointError(f'{weights!r} is not the weights file exported with '
                              f'{os.path.basename(xml_path)!r} (its SHA-256 differs from the '
                              f'one recorded there): export the model again, or put its own '
                              f'.bin beside it')


def _existing(path: str) -> None:
    if not os.path.isfile(path):
        raise CheckpointError(f'exported model {path!r} does not exist')


def load_onnx(path: str):
    """``(model, ModelInfo)`` of an exported ``.onnx``, run by ONNX Runtime in the file's own
    types."""
    _existing(path)
    model = OnnxRuntimeModel(path)
    return model.eval(), model.info


def load_openvino_ir(path: str, *, precision: str = 'fp32',
                     input_size_hw: Optional[Tuple[int, int]] = None,
                     compiled_cache: Optional[str] = None):
    """``(model, ModelInfo)`` of an OpenVINO IR (``.xml`` + ``.bin``), compiled for the CPU.

    ``precision`` (fp32, bf16 or fp16) is OpenVINO's inference precision. The IRs ``anomseg
    export`` writes keep the convolutions on the image in float32 under bf16 (as the PyTorch
    path does), which is what keeps the scores; an IR written by other tools may not.
    """
    _existing(path)
    if precision not in OPENVINO_PRECISIONS:
        raise ConfigError(f'OpenVINO on the CPU runs {", ".join(OPENVINO_PRECISIONS)}, not '
                          f'{precision!r}')
    model = OpenVinoModel(path, input_size_hw=input_size_hw, precision=precision,
                          compiled_cache=compiled_cache)
    return model.eval(), model.info
