"""``anomseg export``'s core: a checkpoint to ONNX or OpenVINO IR, int8 by NNCF (ROS-free)."""
import contextlib
import glob
import hashlib
import json
import os
import xml.etree.ElementTree as ElementTree
import warnings
from typing import List, Optional, Tuple

import numpy as np
import torch

from anomseg_ros.backbones import check_input_size
from anomseg_ros.checkpoint import load_model
from anomseg_ros.data.images import IMAGE_EXTENSIONS, read_rgb
from anomseg_ros.errors import CheckpointError, ConfigError, DatasetError, first_line
from anomseg_ros.logs import get_logger
from anomseg_ros.methods import get_method
from anomseg_ros.preprocessing import to_network_input
from anomseg_ros.runtimes.cache import file_sha256, IrCache
from anomseg_ros.runtimes.exported import (bin_path, BIN_HASH_KEY, kept_signal_stack,
                                           load_openvino_ir, METADATA_KEY, openvino_core)

log = get_logger('anomseg_ros.runtimes')
FORMATS = ('onnx', 'openvino')
ONNX_OPSET = 17
IR_REVISION = 2  # of what _export_openvino writes; part of the cached IRs' names


def calibration_images(folder: str, *, limit: int = 300) -> List[str]:
    """Up to ``limit`` image files under ``folder`` (recursively), evenly spread."""
    paths = sorted(p for p in glob.glob(os.path.join(folder, '**', '*'), recursive=True)
                   if p.lower().endswith(IMAGE_EXTENSIONS))
    if not paths:
        raise DatasetError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) under {folder!r} to '
                           f'calibrate the int8 model with; give a folder of frames from your '
                           f'camera (a few hundred), or anomseg synth ones')
    step = max(1, len(paths) // limit)
    return paths[::step][:limit]


SYNTHETIC_CALIBRATION = 'synthetic'  # the calibration source of a model trained on the world
SYNTHETIC_FRAMES, SYNTHETIC_SEED = 100, 0


def _is_bag(path: str) -> bool:
    return os.path.isfile(os.path.join(path, 'metadata.yaml'))


def calibration_source(source: str, size_hw: Tuple[int, int], info, *, limit: int = 300):
    """``(digest, load)`` of the int8 calibration frames of ``source``: a SHA-256 of what they
    are (the int8 cache's key, cheap to make on every start), and ``load()`` giving NNCF's
    ``(items, transform)``: the frames and what turns one into the network's input.

    ``source`` is a folder of images (searched recursively, ``limit`` of them evenly spread), a
    rosbag2 (``limit`` frames of its camera evenly spread: ``/camera/image_raw``, or its only
    image topic; ``BAG#TOPIC`` names one), or ``"synthetic"``: ``SYNTHETIC_FRAMES``
    street scenes of the package's own world (seed ``SYNTHETIC_SEED``), the documented default
    for a model trained there (the bundled one), never for a camera of the real world.
    """
    def transform(image):
        return to_network_input([image], size_hw, info.mean, info.std).numpy()

    digest = hashlib.sha256(f'{tuple(size_hw)}|{limit}|'.encode())
    if source == SYNTHETIC_CALIBRATION:
        count = min(limit, SYNTHETIC_FRAMES)
        digest.update(f'synthetic|{SYNTHETIC_SEED}|{count}'.encode())

        def load():
            from anomseg_ros.data.synthetic.scene import render_scene
            rng = np.random.default_rng(SYNTHETIC_SEED)
            return [render_scene(rng, size_hw[1], size_hw[0])[0] for _ in range(count)], \
                transform
        return digest.hexdigest(), load
    bag, _, topic = source.partition('#')  # BAG#TOPIC names the camera of a bag with several
    if _is_bag(bag):
        from rosbag_tools.bags import fingerprint
        digest.update(f'bag|{fingerprint(bag)}|{topic}'.encode())

        def load():
            from rosbag_tools.bags import CAMERA_TYPES, IMAGE_TOPIC, read_frames
            from rosbags.rosbag2 import Reader
            with Reader(bag) as reader:
                cameras = {name: t.msgcount for name, t in reader.topics.items()
                           if t.msgtype in CAMERA_TYPES}
            chosen = topic or (IMAGE_TOPIC if IMAGE_TOPIC in cameras else
                               next(iter(cameras)) if len(cameras) == 1 else None)
            if chosen not in cameras:
                problem = f'has no image topic {chosen}' if chosen else \
                    'has several image topics: name its camera as BAG#TOPIC'
                raise DatasetError(f'calibration bag {bag!r} {problem}; its image topics: '
                                   f'{", ".join(sorted(cameras)) or "none"}')
            every = max(1, cameras[chosen] // limit)
            frames = [frame.image for index, frame in
                      enumerate(read_frames(bag, image_topic=chosen)) if index % every == 0]
            if not frames:
                raise DatasetError(f'the bag {bag!r} holds no frames on {chosen} to calibrate '
                                   f'the int8 model with')
            return frames[:limit], transform
        return digest.hexdigest(), load
    if not os.path.isdir(source):
        raise DatasetError(f'calibration {source!r} is neither a folder of images nor a '
                           f'rosbag2 (nor "{SYNTHETIC_CALIBRATION}")')
    paths = calibration_images(source, limit=limit)
    for path in paths:
        digest.update(f'{os.path.relpath(path, source)}|{file_sha256(path)}|'.encode())
    return digest.hexdigest(), lambda: (paths, lambda path: transform(read_rgb(path)))


@contextlib.contextmanager
def _quiet_tracing():
    """Without torch.jit.trace's deprecation FutureWarnings, which the converters' own tracing
    raises on every first start and which a user can do nothing about."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', category=FutureWarning, module=r'torch\.jit')
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        yield


def _export_onnx(model, info, out: str, size_hw: Tuple[int, int], dynamic: bool) -> None:
    import onnx
    example = torch.rand(1, 3, *size_hw)
    axes = {'image': {0: 'batch', 2: 'height', 3: 'width'},
            'logits': {0: 'batch', 2: 'height', 3: 'width'}} if dynamic else None
    with _quiet_tracing():
        torch.onnx.export(model, (example,), out, opset_version=ONNX_OPSET,
                          input_names=['image'], output_names=['logits'], dynamic_axes=axes,
                          dynamo=False)
    proto = onnx.load(out)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(info.to_dict())
    onnx.checker.check_model(proto)
    onnx.save(proto, out)


TAIL_SHARE = 0.1  # int8 accuracy control's pseudo-anomalies: the float model's top tenth


def _maxlogit(logits: np.ndarray) -> np.ndarray:
    """The MaxLogit score (as ``scoring.MaxLogit``) of ``logits`` (N, C, H, W), flat per image."""
    return -logits.max(axis=1).reshape(len(logits), -1)


def score_tail(logits: np.ndarray, share: float = TAIL_SHARE) -> np.ndarray:
    """Per image of ``logits`` (N, C, H, W), the flat mask of the ``share`` of pixels that
    MaxLogit ranks most anomalous."""
    flat = _maxlogit(logits)
    k = max(1, int(round(share * flat.shape[1])))
    return flat >= np.partition(flat, -k, axis=1)[:, [-k]]


def tail_fpr95(reference: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """FPR95 in %, per image, of the MaxLogit score of ``logits`` with the float model's
    ``score_tail`` (``reference``) as the anomalies: the share of the other pixels that score
    at least as high as 95% of the tail does. The float model itself scores 0; a model that
    reorders the tail's border scores more. Like the benchmarks' FPR95, without labels."""
    return np.array([100.0 * (score[~tail] >= np.percentile(score[tail], 5)).mean()
                     for score, tail in zip(_maxlogit(logits), reference)])


def _quantize(ov_model, calibration: tuple, subset_size: int, max_drop: Optional[float],
              validation_limit: int):
    """NNCF post-training int8. With ``max_drop``, NNCF's accuracy control: layers go back to
    float, the most harmful first, until ``tail_fpr95`` of the quantized model, on up to
    ``validation_limit`` of the calibration images, is at most ``max_drop`` points."""
    import logging
    import nncf
    logging.getLogger('nncf').setLevel(logging.WARNING)  # not a line per layer it skips
    paths, transform = calibration
    options = dict(subset_size=subset_size, preset=nncf.QuantizationPreset.MIXED,
                   ignored_scope=nncf.IgnoredScope(names=_ends(ov_model)))
    if max_drop is None:
        return nncf.quantize(ov_model, nncf.Dataset(paths, transform), **options)
    step = max(1, len(paths) // validation_limit)
    reference_model = openvino_core().compile_model(ov_model, 'CPU',
                                                    {'INFERENCE_PRECISION_HINT': 'f32'})
    # NNCF validates dozens of candidate models: decode and scale the held images once
    inputs = [transform(path) for path in paths[::step][:validation_limit]]
    items = [(batch, score_tail(reference_model(batch)[0])) for batch in inputs]

    def validate(compiled, data) -> tuple:  # higher is better for NNCF: 100 - FPR95
        values = [100.0 - float(tail_fpr95(tail, compiled(batch)[0])[0]) for batch, tail in data]
        return float(np.mean(values)), values

    return nncf.quantize_with_accuracy_control(
        ov_model, nncf.Dataset(paths, transform), nncf.Dataset(items, lambda item: item[0]),
        validate, max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE, **options)


def _export_openvino(model, info, out: str, size_hw: Tuple[int, int],
                     calibration: Optional[tuple], subset_size: int,
                     max_drop: Optional[float] = None, validation_limit: int = 20) -> None:
    import openvino
    with _quiet_tracing():
        ov_model = openvino.convert_model(model, example_input=torch.rand(1, 3, *size_hw),
                                          input=[1, 3, *size_hw])
    if calibration is not None:
        with kept_signal_stack():  # NNCF makes and drops OpenVINO Cores of its own
            ov_model = _quantize(ov_model, calibration, subset_size, max_drop, validation_limit)
    if calibration is not None:
        ov_model.set_rt_info(json.dumps(float_convolutions(ov_model)), [FLOAT_LAYERS_KEY])
    ov_model.set_rt_info(json.dumps(info.to_dict()), [METADATA_KEY])
    openvino.save_model(ov_model, out, compress_to_fp16=False)
    _finish_xml(out, _image_convolutions(ov_model))


FLOAT_LAYERS_KEY = 'anomseg_float_layers'  # of an int8 IR: its convolutions left in float


def float_convolutions(ov_model) -> dict:
    """Of a quantized model: how many convolutions it has, and the names of those whose input
    is not quantized (no FakeQuantize before them): the ones int8 left in float, by
    ``_ends`` or by NNCF's accuracy control."""
    convolutions = _convolutions(ov_model)
    left = [_layer_name(op.get_friendly_name()) for op in convolutions
            if op.input_value(0).get_node().get_type_name() != 'FakeQuantize']
    return {'convolutions': len(convolutions), 'float': left}


def _layer_name(name: str) -> str:
    """The PyTorch module of a converted layer's name
    (``__module.encoder.initial_block.conv/aten::_convolution/Convolution`` ->
    ``encoder.initial_block.conv``); other names as they are."""
    return name[len('__module.'):].split('/')[0] if name.startswith('__module.') else name


def _finish_xml(xml_path: str, precise: List[str]) -> None:
    """Mark layers ``precise`` of the IR at ``xml_path`` to stay in float32 when OpenVINO runs
    the rest in bf16 (or f16): the IR's ``precise`` attribute, which OpenVINO's own
    ``compress_to_fp16`` writes for the layers it must not round (Python has no call that sets
    it on a node, so it goes into the file). And record the SHA-256 of the ``.bin`` in the
    model's rt_info (``BIN_HASH_KEY``), so that loading refuses another model's weights."""
    tree = ElementTree.parse(xml_path)
    for layer in tree.getroot().iter('layer'):
        if layer.get('name') in precise:
            rt_info = layer.find('rt_info')
            if rt_info is None:
                rt_info = ElementTree.SubElement(layer, 'rt_info')
            ElementTree.SubElement(rt_info, 'attribute', {'name': 'precise', 'version': '0'})
    model_info = tree.getroot().find('./rt_info')
    if model_info is None:
        model_info = ElementTree.SubElement(tree.getroot(), 'rt_info')
    ElementTree.SubElement(model_info, BIN_HASH_KEY,
                           {'value': file_sha256(bin_path(xml_path))})
    tree.write(xml_path, encoding='utf-8', xml_declaration=True)


_CONVOLUTIONS = ('Convolution', 'ConvolutionBackpropData', 'GroupConvolution')


def _convolutions(ov_model) -> list:
    return [op for op in ov_model.get_ordered_ops() if op.get_type_name() in _CONVOLUTIONS]


def _image_convolutions(ov_model) -> List[str]:
    """The convolutions on the image (3 input channels). Rounding the image and their weights
    to bf16 is what moved the scores' tails (FPR95 +0.6 points with the Cityscapes ERFNet on
    RoadAnomaly21); in float32 they cost nothing measurable (bench/bench_precision.py)."""
    return sorted({op.get_friendly_name() for op in _convolutions(ov_model)
                   if op.input(0).get_partial_shape()[1].get_length() == 3})


def _decoder(ov_model) -> List[str]:
    """The convolutions after the last one at the network's coarsest resolution: the decoder
    that brings the features back up to the logits (ERFNet: its 19 of 74, from the first
    transposed convolution on; a network that upsamples without convolutions has none)."""
    convolutions = _convolutions(ov_model)
    heights = [op.get_output_partial_shape(0)[2] for op in convolutions]
    if not convolutions or any(h.is_dynamic for h in heights):
        return []
    heights = [h.get_length() for h in heights]
    last_coarsest = max(i for i, h in enumerate(heights) if h == min(heights))
    return [op.get_friendly_name() for op in convolutions[last_coarsest + 1:]]


def _ends(ov_model) -> List[str]:
    """The convolutions int8 must not touch: those on the image, the decoder and the last one
    (the logits). Quantizing them moved FPR95 most (as bf16 did for the first): with the
    Cityscapes ERFNet calibrated on 60 Road Anomaly images, keeping the decoder in float took
    fs_static's largest FPR95 change from 2.25 to 1.93 points (RoadAnomaly21's stayed at
    1.0) for 10% more time a frame (docs/speed.md)."""
    last = [op.get_friendly_name() for op in _convolutions(ov_model)[-1:]]
    return sorted(set(_image_convolutions(ov_model) + _decoder(ov_model) + last))


def export_model(weights: str, fmt: str, out: str, *,
                 input_size_hw: Optional[Tuple[int, int]] = None, dynamic: bool = False,
                 calibration_dir: Optional[str] = None, calibration_limit: int = 300,
                 max_drop: Optional[float] = None, backbone: Optional[str] = None) -> dict:
    """Write the model of ``weights`` to ``out`` as ``fmt`` (onnx or openvino); with
    ``calibration_dir`` (OpenVINO only) quantize it to int8 on those images, and with
    ``max_drop`` keep the layers in float that would move the score tail's FPR95 more than
    that (``_quantize``). ``backbone`` is ``load_model``'s, for plain state dicts. Returns what
    was written."""
    if fmt not in FORMATS:
        raise ConfigError(f'format must be one of {", ".join(FORMATS)}, got {fmt!r}')
    suffix = '.onnx' if fmt == 'onnx' else '.xml'
    if not out.lower().endswith(suffix):
        raise ConfigError(f'a {fmt} model is written to a {suffix} file, got {out!r}')
    if calibration_dir and fmt != 'openvino':
        raise ConfigError('int8 quantization (`calibration_dir`) writes OpenVINO IR: use '
                          '`fmt` openvino')
    if max_drop is not None and (not calibration_dir or not 0 < max_drop < 100):
        raise ConfigError(f'`max_drop` is in points of FPR95 (between 0 and 100) and '
                          f'needs an int8 export (`calibration_dir` DIR); got {max_drop}')
    model, info = load_model(weights, backbone=backbone)
    if info.method and get_method(info.method).not_exportable:
        raise ConfigError(f'a {info.method} checkpoint runs in PyTorch only '
                          f'({get_method(info.method).not_exportable}); use runtime torch')
    size_hw = tuple(input_size_hw or info.input_size_hw)
    check_input_size(info.backbone, size_hw)
    info.input_size_hw = size_hw
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if fmt == 'onnx':
        try:
            _export_onnx(model, info, out, size_hw, dynamic)
        except ImportError:
            raise
        except Exception as exc:  # an operation the exporter cannot trace
            raise ConfigError(f'{info.backbone} cannot be exported to ONNX '
                              f'({type(exc).__name__}: {first_line(exc)}); run it in PyTorch '
                              f'(runtime torch) instead') from None
        return {'format': 'onnx', 'path': out, 'input_size_hw': size_hw, 'dynamic': dynamic}
    calibration, paths = None, []
    if calibration_dir:
        paths, transform = calibration_source(calibration_dir, size_hw, info,
                                              limit=calibration_limit)[1]()
        calibration = (paths, transform)
    try:
        _export_openvino(model, info, out, size_hw, calibration, len(paths) or 1, max_drop)
    except ImportError:
        raise
    except Exception as exc:
        raise ConfigError(f'{info.backbone} cannot be converted to OpenVINO '
                          f'({type(exc).__name__}: {first_line(exc)}); run it in PyTorch '
                          f'(runtime torch) instead') from None
    return {'format': 'openvino', 'path': out, 'input_size_hw': size_hw,
            'int8': bool(calibration_dir), 'calibration_images': len(paths),
            'int8_max_drop': max_drop}


INT8_CALIBRATION_LIMIT = 300


def openvino_from_checkpoint(weights: str, *, input_size_hw: Optional[Tuple[int, int]],
                             precision: str, backbone: Optional[str] = None,
                             cache: Optional[IrCache] = None, int8: Optional[dict] = None):
    """``(model, info, note)`` of a PyTorch checkpoint run by OpenVINO: converted to IR once
    and kept in the cache (``runtimes.cache``: written atomically, verified before each use)
    under the checkpoint's hash, the backbone and the input size; OpenVINO caches the
    compiled model beside it, so the second start neither converts nor compiles. ``note`` is
    the one warning about the cache there was ('' when none: a hit or a first build). A
    checkpoint that cannot be read raises ``CheckpointError``, one OpenVINO cannot run
    ``ConfigError``.

    ``int8`` (``{"calibration": source, "max_drop": points or None}``) quantizes the IR with
    NNCF on the frames of ``calibration_source(source)`` (an empty source: the synthetic
    world's, for a checkpoint trained there; refused for others), under accuracy control when
    ``max_drop`` is given, and caches it keyed by the calibration frames' hash and
    ``max_drop`` too; ``precision`` is then that of the layers left in float."""
    import shutil
    if weights == 'random':
        raise ConfigError('runtime openvino needs a checkpoint file, not random weights')
    checkpoint_info = load_model(weights, backbone=backbone)[1]  # names an unreadable file
    size_hw = tuple(input_size_hw or checkpoint_info.input_size_hw)
    checkpoint_hash = file_sha256(weights)
    fields = {'checkpoint_sha256': checkpoint_hash, 'backbone': checkpoint_info.backbone,
              'input_size_hw': list(size_hw), 'ir_precision': 'fp32',
              'ir_revision': IR_REVISION}
    key = f'{checkpoint_hash[:16]}_{checkpoint_info.backbone}_{size_hw[1]}x{size_hw[0]}' \
          f'_r{IR_REVISION}'
    calibration = None
    if int8 is not None:
        max_drop = int8.get('max_drop')
        if max_drop is not None and not 0 < max_drop < 100:
            raise ConfigError(f'int8_max_drop is in points of FPR95, between 0 and 100 (or '
                              f'none: no accuracy control); got {max_drop}')
        source = int8['calibration']
        if not source:
            if not checkpoint_info.trained_on.startswith('synthetic'):
                raise ConfigError('precision int8 needs calibration frames: set calibration to '
                                  'a folder of images or a rosbag2 of your camera (a few '
                                  'hundred ordinary frames; no labels)')
            source = SYNTHETIC_CALIBRATION
        digest, calibration = calibration_source(source, size_hw, checkpoint_info,
                                                 limit=INT8_CALIBRATION_LIMIT)
        fields.update(ir_precision='int8', calibration_sha256=digest, int8_max_drop=max_drop)
        key += f'_int8_{digest[:12]}_d{max_drop if max_drop is not None else "none"}'

    def build(xml_path: str) -> None:
        try:
            if calibration is None:
                export_model(weights, 'openvino', xml_path, input_size_hw=size_hw,
                             backbone=backbone)
                return
            model, info = load_model(weights, backbone=backbone)
            info.input_size_hw = size_hw
            frames = calibration()
            control = f'under accuracy control ({fields["int8_max_drop"]:g} points), ' \
                if fields['int8_max_drop'] is not None else ''
            log.warning(f'precision int8: quantizing {weights} at {size_hw[1]}x{size_hw[0]} on '
                        f'{len(frames[0])} frames of {source} {control}once: '
                        f'minutes on a first start, cached after')
            _export_openvino(model, info, xml_path, size_hw, frames, len(frames[0]),
                             fields['int8_max_drop'])
        except (ImportError, DatasetError):  # NNCF missing; calibration frames that are not
            raise
        except ConfigError as exc:  # a backbone OpenVINO cannot convert, a wrong size
            raise ConfigError(f'{weights!r} cannot run on OpenVINO: {exc}') from None
        except Exception as exc:  # noqa: B902 - what NNCF or the converter raised
            raise ConfigError(f'{weights!r} cannot be converted to OpenVINO int8 '
                              f'({type(exc).__name__}: {first_line(exc)}); use precision '
                              f'auto') from None

    cache = cache or IrCache()
    path, note = cache.get(key, fields, build)
    uncached = not path.startswith(os.path.join(cache.root, ''))
    try:
        model, info = load_openvino_ir(path, precision=precision, input_size_hw=size_hw,
                                       compiled_cache=None if uncached else cache.compiled_dir)
        left = recorded_float_layers(path) if int8 is not None else None
    finally:
        if uncached:  # OpenVINO holds what it needs: the files go with this run
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)
    for field in ('backbone', 'num_classes', 'class_names', 'void_channel', 'method'):
        if getattr(info, field) != getattr(checkpoint_info, field):
            raise CheckpointError(f'the cached OpenVINO model {path} is not a conversion of '
                                  f'{weights!r} ({field} {getattr(info, field)!r} against '
                                  f'{getattr(checkpoint_info, field)!r}); delete it')
    info.source = weights
    if left:
        shown = ', '.join(left['float'][:8]) + (', ...' if len(left['float']) > 8 else '')
        note = '; '.join(filter(None, [note, (
            f'int8: {len(left["float"])} of {left["convolutions"]} convolutions stay in '
            f'{precision} ({shown})')]))
    return model, info, note


def recorded_float_layers(xml_path: str) -> Optional[dict]:
    """What ``float_convolutions`` recorded in an int8 IR (None in others)."""
    found = ElementTree.parse(xml_path).getroot().find(f'./rt_info/{FLOAT_LAYERS_KEY}')
    return None if found is None else json.loads(found.get('value'))
