"""sensor_msgs/Image and CompressedImage <-> numpy, with every check a camera driver can fail.

Decoding reads only message attributes, so it is tested without ROS; encoding builds messages
and needs sensor_msgs.
"""
from typing import Tuple

import cv2
import numpy as np

from anomseg_ros.data.images import check_pixels, decode_checked, DEFAULT_MAX_PIXELS
from anomseg_ros.errors import ImageFormatError

# encoding -> (channels, index of R, G, B); mono8 is replicated to three channels
INPUT_ENCODINGS = {
    'rgb8': (3, (0, 1, 2)),
    'bgr8': (3, (2, 1, 0)),
    'rgba8': (4, (0, 1, 2)),
    'bgra8': (4, (2, 1, 0)),
    'mono8': (1, (0, 0, 0)),
}


# encoding -> (dtype, channels) of the images the package writes and reads back whole (its
# outputs, ground-truth labels, score maps); camera frames are read by INPUT_ENCODINGS
ARRAY_ENCODINGS = {'rgb8': (np.uint8, 3), 'mono8': (np.uint8, 1), '32FC1': (np.float32, 1)}
NS_PER_S = 1_000_000_000


def stamp_to_ns(stamp) -> int:
    """A ``builtin_interfaces/Time`` (rclpy's or rosbags') as integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_sec_nanosec(stamp_ns: int) -> Tuple[int, int]:
    """Integer nanoseconds as a ``Time``'s ``(sec, nanosec)``."""
    return divmod(int(stamp_ns), NS_PER_S)


def array_encoding(array: np.ndarray) -> str:
    """The ``ARRAY_ENCODINGS`` name of an array: rgb8 (H,W,3) uint8, mono8 (H,W) uint8, 32FC1
    (H,W) float32."""
    for encoding, (dtype, channels) in ARRAY_ENCODINGS.items():
        shape_ok = array.ndim == 3 and array.shape[2] == channels if channels > 1 else \
            array.ndim == 2
        if array.dtype == dtype and shape_ok:
            return encoding
    raise ImageFormatError(f'cannot store a {array.dtype} array of shape {array.shape} as an '
                           f'image; one of {", ".join(ARRAY_ENCODINGS)}')


def image_msg_to_rgb(msg, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A ``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8) as ``(H,W,3)`` uint8 RGB;
    frames above ``max_pixels`` (0: no limit) are refused."""
    encoding = msg.encoding
    if encoding not in INPUT_ENCODINGS:
        raise ImageFormatError(f'unsupported encoding {encoding!r}; publish one of '
                               f'{", ".join(INPUT_ENCODINGS)} (or use image/compressed)')
    channels, rgb_index = INPUT_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageFormatError(f'empty image: {width}x{height}')
    check_pixels(width, height, max_pixels, f'{encoding} image')
    row_bytes = width * channels
    if step < row_bytes:
        raise ImageFormatError(f'step {step} is smaller than width*channels = {row_bytes} for '
                               f'{width}x{height} {encoding}')
    data = msg.data
    buffer = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data
    expected = step * height
    if buffer.size != expected:
        kind = 'truncated' if buffer.size < expected else 'oversized'
        raise ImageFormatError(f'{kind} data: {buffer.size} bytes, expected step*height = '
                               f'{step}*{height} = {expected}')
    pixels = buffer.reshape(height, step)[:, :row_bytes].reshape(height, width, channels)
    if encoding == 'rgb8':
        return np.ascontiguousarray(pixels)
    return np.ascontiguousarray(pixels[..., list(rgb_index)])


def compressed_msg_to_rgb(msg, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` (jpeg, png, ...) as ``(H,W,3)`` uint8 RGB; its header
    is read first and images above ``max_pixels`` (0: no limit) are refused undecoded."""
    buffer = np.frombuffer(msg.data, np.uint8) if not isinstance(msg.data, np.ndarray) \
        else msg.data
    what = f'compressed image of {buffer.size} bytes (format {msg.format!r})'
    image = decode_checked(buffer, cv2.IMREAD_COLOR, what, max_pixels=max_pixels)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def array_to_image_msg(array: np.ndarray, encoding: str, header=None):
    """A numpy image as ``sensor_msgs/Image``: rgb8 (H,W,3) uint8, mono8 (H,W) uint8 or 32FC1
    (H,W) float32."""
    from sensor_msgs.msg import Image
    dtype, channels = ARRAY_ENCODINGS[encoding]
    ndim = 3 if channels > 1 else 2
    array = np.ascontiguousarray(array, dtype=dtype)
    if array.ndim != ndim:
        raise ValueError(f'{encoding} needs a {ndim}-d array, got shape {array.shape}')
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = array.shape[:2]
    msg.encoding = encoding
    msg.is_bigendian = int(np.little_endian is False)
    msg.step = array.strides[0]
    msg.data = array.tobytes()
    return msg


def image_msg_to_array(msg) -> Tuple[np.ndarray, str]:
    """An rgb8, mono8 or 32FC1 image message (rclpy's or rosbags', rows possibly padded beyond
    ``step``) back to numpy: (H,W,3) or (H,W)."""
    if msg.encoding not in ARRAY_ENCODINGS:
        raise ImageFormatError(f'cannot read encoding {msg.encoding!r} as an array; one of '
                               f'{", ".join(ARRAY_ENCODINGS)} (camera frames: '
                               f'image_msg_to_rgb)')
    dtype, channels = ARRAY_ENCODINGS[msg.encoding]
    rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)
    row_bytes = msg.width * channels * np.dtype(dtype).itemsize
    array = np.ascontiguousarray(rows[:, :row_bytes]).view(dtype)
    array = array.reshape(msg.height, msg.width, channels)
    return (array[..., 0] if channels == 1 else array), msg.encoding


def vision_msgs_available() -> bool:
    """Whether ``vision_msgs`` (a ROS package, not a PyPI wheel) can be imported."""
    try:
        import vision_msgs.msg  # noqa: F401
    except ImportError:
        return False
    return True


ANOMALY_CLASS_ID = 'anomaly'


def obstacles_to_detections(obstacles, header=None, ids=None):
    """Obstacles as a ``vision_msgs/Detection2DArray``: one ``Detection2D`` per connected
    component, its bbox centre and size in input pixels, one hypothesis (class id
    ``"anomaly"``, score = the component's mean anomaly score, on the scorer's scale), its
    ``id`` (``ids[i]`` when given, e.g. a track id; else its rank by size), and the frame's
    header."""
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose
    msg = Detection2DArray()
    if header is not None:
        msg.header = header
    for index, obstacle in enumerate(obstacles):
        detection = Detection2D()
        if header is not None:
            detection.header = header
        detection.bbox.center.position.x = obstacle.x + obstacle.width / 2.0
        detection.bbox.center.position.y = obstacle.y + obstacle.height / 2.0
        detection.bbox.size_x = float(obstacle.width)
        detection.bbox.size_y = float(obstacle.height)
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = ANOMALY_CLASS_ID
        hypothesis.hypothesis.score = float(obstacle.mean_score)
        detection.results = [hypothesis]
        detection.id = str(ids[index] if ids is not None else index)
        msg.detections.append(detection)
    return msg


def label_info_msg(class_names, header=None, threshold: float = 0.0):
    """The class table of ``semantic`` as ``vision_msgs/LabelInfo``: trainId -> name, and the
    void value 255."""
    from vision_msgs.msg import LabelInfo, VisionClass
    msg = LabelInfo(threshold=float(threshold))
    if header is not None:
        msg.header = header
    msg.class_map = [VisionClass(class_id=index, class_name=name)
                     for index, name in enumerate(class_names)]
    msg.class_map.append(VisionClass(class_id=255, class_name='void'))
    return msg
