"""The detector node's parameters: one table with type, default, description, range and whether
they may change at run time. ``config/detector.yaml`` mirrors it."""
import dataclasses
from typing import Any, Optional, Tuple

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from anomseg_ros.backbones import list_backbones
from anomseg_ros.scoring import list_scorers

OUTPUTS = ('semantic', 'semantic_color', 'anomaly_score', 'obstacle_mask', 'overlay')


@dataclasses.dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    dynamic: bool = False
    range: Optional[Tuple[float, float, float]] = None  # from, to, step


PARAMS = (
    Param('backbone', 'erfnet', f'segmentation network for plain state dicts and "random" '
          f'weights ({", ".join(list_backbones())}); an anomseg checkpoint names its own'),
    Param('weights', '', 'checkpoint path; "" = the bundled default models/erfnet_synthetic.pt, '
          '"random" = untrained (outputs meaningless); relative paths are also looked up in the '
          'package share folder'),
    Param('scorer', 'msp', f'anomaly scorer: {", ".join(list_scorers())}', dynamic=True),
    Param('threshold', 0.5, 'anomaly score at or above which a pixel is an obstacle (its scale '
          'depends on the scorer: msp in [0,1], maxlogit negative logits, ...)', dynamic=True,
          range=(-1000.0, 1000.0, 0.0)),
    Param('temperature', 0.0, 'softmax temperature for scorers that take one (msp, '
          'temperature, energy); 0 = the checkpoint\'s calibrated value or the scorer default',
          dynamic=True, range=(0.0, 100.0, 0.0)),
    Param('input_width', 0, 'network input width in pixels, multiple of 8; 0 = checkpoint\'s',
          range=(0, 8192, 8)),
    Param('input_height', 0, 'network input height in pixels, multiple of 8; 0 = checkpoint\'s',
          range=(0, 8192, 8)),
    Param('device', 'auto', 'auto (CUDA when available), cpu or cuda'),
    Param('queue_depth', 1, 'depth of the input subscription (sensor-data QoS) and of the output '
          'publishers', range=(1, 100, 1)),
    Param('subscribe_compressed', False, 'also subscribe to image/compressed '
          '(sensor_msgs/CompressedImage)'),
    Param('diagnostics_period', 1.0, 'seconds between /diagnostics messages',
          range=(0.1, 60.0, 0.0)),
) + tuple(Param(f'publish.{name}', True, f'publish the {name} topic') for name in OUTPUTS)


def descriptor(param: Param) -> ParameterDescriptor:
    desc = ParameterDescriptor(description=param.description, read_only=not param.dynamic)
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
