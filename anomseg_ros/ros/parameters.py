"""The detector node's parameters: one table with type, default, description, range and whether
they may change at run time. ``config/detector.yaml`` mirrors it."""
import dataclasses
from typing import Any, Optional, Tuple

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from anomseg_ros.backbones import list_backbones
from anomseg_ros.data.images import DEFAULT_MAX_PIXELS
from anomseg_ros.obstacles import DEFAULT_MIN_AREA
from anomseg_ros.ros.outputs import OPTIONAL_OUTPUTS, OUTPUTS
from anomseg_ros.scoring import list_scorers
from anomseg_ros.scoring.base import MAX_TEMPERATURE


@dataclasses.dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    dynamic: bool = False
    range: Optional[Tuple[float, float, float]] = None  # from, to, step
    any_type: bool = False  # a string or a number (threshold: "auto" or a value)


PARAMS = (
    Param('backbone', 'erfnet', f'segmentation network for plain state dicts and "random" '
          f'weights ({", ".join(list_backbones())}); an anomseg checkpoint names its own'),
    Param('weights', '', 'checkpoint path; "" = the bundled default models/erfnet_synthetic.pt, '
          '"random" = untrained (outputs meaningless); relative paths are also looked up in the '
          'package share folder'),
    Param('scorer', 'msp', f'anomaly scorer: {", ".join(list_scorers())}; NAME+boundary or '
          f'NAME+smooth refines one (boundary suppression and dilated smoothing, or a Gaussian)',
          dynamic=True),
    Param('threshold', 'auto', 'anomaly score at or above which a pixel is an obstacle (its '
          'scale depends on the scorer: msp in [0,1], maxlogit negative logits, ...); "auto" = '
          'the checkpoint\'s calibrated threshold for the active scorer (anomseg calibrate '
          '--thresholds), re-applied when the scorer changes, else 0.5', dynamic=True,
          any_type=True),
    Param('temperature', 0.0, 'softmax temperature for scorers that take one (msp, '
          'temperature, energy): 0 = msp takes the checkpoint\'s calibrated value, the others '
          'their default (temperature 1.5, energy 1); else 0.01 to 100 (smaller ones overflow '
          'to NaN scores)',
          dynamic=True, range=(0.0, MAX_TEMPERATURE, 0.0)),
    Param('input_width', 0, 'network input width in pixels, a multiple of the backbone\'s '
          '(ERFNet: 8; the others take any); 0 = checkpoint\'s', range=(0, 8192, 1)),
    Param('input_height', 0, 'network input height in pixels, a multiple of the backbone\'s '
          '(ERFNet: 8; the others take any); 0 = checkpoint\'s', range=(0, 8192, 1)),
    Param('device', 'auto', 'auto (CUDA when available), cpu or cuda'),
    Param('runtime', 'auto', 'torch, openvino (a PyTorch checkpoint converted once, cached '
          'on disk) or auto (openvino on the CPU when installed and the model converts, else '
          'torch); .onnx / .xml weights pick their own'),
    Param('precision', 'auto', 'forward pass precision: auto (bf16 on CPUs with AMX or '
          'AVX512-BF16, fp16 on CUDA, else fp32), fp32, bf16, fp16 (CUDA only), or int8 (the '
          'checkpoint quantized for OpenVINO with NNCF on the calibration frames once, cached)'),
    Param('calibration', '', 'precision int8: a folder of images or a rosbag2 of this camera '
          '(a few hundred ordinary frames, no labels; BAG#TOPIC names the topic of a bag with '
          'several cameras) to quantize on; empty = the synthetic '
          'world\'s scenes for a model trained there (the bundled one), required for others'),
    Param('int8_max_drop', 0.0, 'precision int8: NNCF\'s accuracy control keeps layers in '
          'float until the label-free FPR95 of the int8 scores moved at most this many points; '
          '0 = plain int8 with the decoder in float (the default: it kept the benchmarks\' '
          'budget better)', range=(0.0, 100.0, 0.0)),
    Param('cameras', [], 'several cameras through one network: each a name (its image topic '
          'NAME/image_raw) or an image topic (/left/image_raw: named left); their newest frames '
          'go through the network in one batch and each camera\'s outputs go to NAME/<output>; '
          '[] = one camera on image'),
    Param('batch_wait', 0.05, 'seconds the worker waits, after a camera\'s frame came, for '
          'the other cameras\' frames before it runs the batch without them (a camera that '
          'stopped does not stall the others)', range=(0.0, 10.0, 0.0)),
    Param('queue_depth', 1, 'depth of the input subscription (sensor-data QoS) and of the output '
          'publishers', range=(1, 100, 1)),
    Param('subscribe_compressed', False, 'also subscribe to image/compressed '
          '(sensor_msgs/CompressedImage)'),
    Param('max_input_pixels', DEFAULT_MAX_PIXELS, 'frames with more pixels are refused before '
          'decoding (a compressed image\'s header is read first); 0 = no limit',
          range=(0, 1 << 31, 1)),
    Param('lazy', True, 'skip the network while no one subscribes to any output (the frames '
          'are counted as skipped); it resumes with the next frame once someone does'),
    Param('publish_compressed', False, 'also publish <output>/compressed (sensor_msgs/'
          'CompressedImage: PNG for obstacle_mask and semantic_color, JPEG for overlay)'),
    Param('publish_debug', False, 'also publish ~/debug/processing_time_ms (frame taken to '
          'outputs published) and ~/debug/pipeline_latency_ms (the frame\'s stamp to its '
          'outputs published), std_msgs/Float64, as Autoware nodes do'),
    Param('mask_region', 'all', 'all, or drivable: the mask (and the obstacles) only on the '
          'road of the model\'s own labels, filled along each row so that objects standing on it '
          'are inside, widened by 8 pixels', dynamic=True),
    Param('persistence_k', 0, 'temporal persistence of the obstacles: publish one only once '
          'seen in k of the last persistence_n frames (boxes associated by overlap, each with an '
          'id); 0 = off', range=(0, 100, 1)),
    Param('persistence_n', 5, 'the window of persistence_k, in frames', range=(1, 100, 1)),
    Param('min_obstacle_area', DEFAULT_MIN_AREA, 'smallest connected component of the mask, in '
          'input pixels, that is published on obstacles', dynamic=True, range=(1, 1 << 31, 1)),
    Param('camera_info_max_age', 2.0, 'seconds: a camera_info older than this is not '
          're-stamped onto new frames (a camera that stopped sending it)',
          range=(0.01, 3600.0, 0.0)),
    Param('diagnostics_period', 1.0, 'seconds between /diagnostics messages',
          range=(0.1, 60.0, 0.0)),
    Param('health_window', 10.0, 'seconds of the window /diagnostics judges by: rejected or '
          'failed frames in it give WARN (ERROR when all failed)', range=(1.0, 3600.0, 0.0)),
    Param('stale_timeout', 5.0, 'seconds a frame may wait for its outputs (in the slot or in '
          'the network) before /diagnostics reports ERROR (stale)', range=(0.5, 3600.0, 0.0)),
) + tuple(Param(f'publish.{name}', True, f'publish the {name} topic')
          for name in OUTPUTS + ('obstacles',)) + tuple(
    Param(f'publish.{o.name}', o.default, f'publish the {o.name} topic ({o.description})')
    for o in OPTIONAL_OUTPUTS)


def descriptor(param: Param) -> ParameterDescriptor:
    # a list: rclpy types an empty default as a byte array, so its type is the value's own
    desc = ParameterDescriptor(description=param.description, read_only=not param.dynamic,
                               dynamic_typing=param.any_type or isinstance(param.default, list))
    if param.range is not None:
        low, high, step = param.range
        if isinstance(param.default, int) and not isinstance(param.default, bool):
            desc.integer_range = [IntegerRange(from_value=int(low), to_value=int(high),
                                               step=int(step))]
        else:
            desc.floating_point_range = [FloatingPointRange(from_value=float(low),
                                                            to_value=float(high),
                                                            step=float(step))]
    return desc
