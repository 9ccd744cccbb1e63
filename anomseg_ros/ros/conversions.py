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
    layouts = {'rgb8': (np.uint8, 3), 'mono8': (np.uint8, 2), '32FC1': (np.float32, 2)}
    dtype, ndim = layouts[encoding]
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
    dtypes = {'rgb8': (np.uint8, 3), 'mono8': (np.uint8, 1), '32FC1': (np.float32, 1)}
    if msg.encoding not in dtypes:
        raise ImageFormatError(f'cannot read encoding {msg.encoding!r}')
    dtype, channels = dtypes[msg.encoding]
    rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)
    row_bytes = msg.width * channels * np.dtype(dtype).itemsize
    array = np.ascontiguousarray(rows[:, :row_bytes]).view(dtype)
    array = array.reshape(msg.height, msg.width, channels)
    return (array[..., 0] if channels == 1 else array), msg.encoding


# The fields of the obstacles message, one point per obstacle (see obstacles_to_msg).
OBSTACLE_FIELDS = ('x', 'y', 'width', 'height', 'area', 'centroid_x', 'centroid_y',
                   'mean_score', 'max_score')


def obstacles_to_msg(obstacles, header=None):
    """Obstacles as a ``sensor_msgs/PointCloud2`` used as a typed table: one "point" per
    obstacle with float32 fields ``OBSTACLE_FIELDS`` (box in input pixels, area, centroid,
    mean and max score), read with ``sensor_msgs_py.point_cloud2.read_points`` or numpy.

    (vision_msgs/Detection2DArray would be the natural type, but it is not installed with
    every ROS 2 setup; a message of our own would need an interface package built with CMake.)
    """
    from sensor_msgs.msg import PointCloud2, PointField
    table = np.array([[getattr(o, f) for f in OBSTACLE_FIELDS] for o in obstacles],
                     np.float32).reshape(len(obstacles), len(OBSTACLE_FIELDS))
    msg = PointCloud2(height=1, width=len(obstacles), is_bigendian=not np.little_endian,
                      point_step=4 * len(OBSTACLE_FIELDS), is_dense=True)
    if header is not None:
        msg.header = header
    msg.fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, name in enumerate(OBSTACLE_FIELDS)]
    msg.row_step = msg.point_step * msg.width
    msg.data = table.tobytes()
    return msg


def msg_to_obstacle_table(msg) -> np.ndarray:
    """A message of ``obstacles_to_msg`` back to a structured numpy array (one row each)."""
    dtype = np.dtype([(f.name, '<f4' if not msg.is_bigendian else '>f4') for f in msg.fields])
    return np.frombuffer(bytes(msg.data), dtype=dtype, count=msg.width)
