"""The detector node's image outputs, declared once: name, encoding, how each is rendered from a
detection, how it is compressed on ``<name>/compressed``, and what it means. The node, its
parameters, the client, the benchmark and the node reference's table all read this table."""
import dataclasses
from typing import Callable, Optional

import cv2
import numpy as np

from anomseg_ros.labels import colorize
from anomseg_ros.pipeline import Detection
from anomseg_ros.visualize import overlay

JPEG_QUALITY = 90


@dataclasses.dataclass(frozen=True)
class Output:
    name: str
    encoding: str                                        # sensor_msgs/Image encoding
    render: Callable[[np.ndarray, Detection], np.ndarray]  # (input RGB, detection) -> array
    compression: Optional[str]                           # 'png' / 'jpeg' on <name>/compressed
    description: str
    default: bool = True                                 # published unless switched off


IMAGE_OUTPUTS = (
    Output('semantic', 'mono8', lambda image, d: d.labels, None,
           'Cityscapes trainIds 0-18, 255 where void'),
    Output('semantic_color', 'rgb8', lambda image, d: colorize(d.labels), 'png',
           'the labels in the Cityscapes palette'),
    Output('anomaly_score', '32FC1', lambda image, d: d.score_map, None,
           'higher = more anomalous, at the input resolution'),
    Output('obstacle_mask', 'mono8', lambda image, d: d.mask.astype(np.uint8) * 255, 'png',
           '255 where anomaly_score >= threshold, else 0'),
    Output('overlay', 'rgb8', lambda image, d: overlay(image, d.mask), 'jpeg',
           'the input with obstacle pixels blended towards red'),
)
# off by default, and only for models that can: switched on with publish.<name>
OPTIONAL_OUTPUTS = (
    Output('resynthesis', 'rgb8', lambda image, d: d.resynthesis, 'jpeg',
           'SynBoost checkpoints: the image re-synthesised from the predicted labels, to see '
           'why a pixel was flagged', default=False),
)
OUTPUTS = tuple(output.name for output in IMAGE_OUTPUTS)  # what every model publishes
BY_NAME = {output.name: output for output in IMAGE_OUTPUTS + OPTIONAL_OUTPUTS}


def compress(array: np.ndarray, encoding: str, compression: str):
    """``(format, bytes)`` of a ``sensor_msgs/CompressedImage`` as image_transport's
    ``compressed`` plugin writes them (``"rgb8; jpeg compressed bgr8"``)."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    if compression == 'jpeg':
        ok, data = cv2.imencode('.jpg', array, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    else:
        ok, data = cv2.imencode('.png', array)
    if not ok:
        raise ValueError(f'cannot encode {encoding} as {compression}')
    target = 'bgr8' if array.ndim == 3 else encoding
    return f'{encoding}; {compression} compressed {target}', data.tobytes()
